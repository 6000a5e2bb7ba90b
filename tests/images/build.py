"""Builds the test images from Debian's static busybox, with no registry.

Each image is built from a temporary context holding its Dockerfile, the host's
/bin/busybox and any extra files, and is labelled with a hash of that context: it is
rebuilt only when missing or when an input changed. `python tests/images/build.py` runs it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUSYBOX = Path("/bin/busybox")
HASH_LABEL = "sigtrace.test.context-sha256"
BUILD_TIMEOUT_S = 180
# Bump to force a rebuild when the way images are built changes but no input file does.
BUILDER_VERSION = "1"

log = logging.getLogger("sigtrace.test.images")


@dataclass(frozen=True)
class ImageSpec:
    name: str
    # Extra files, relative to tests/images, copied next to the Dockerfile and busybox.
    files: tuple[str, ...] = ()
    # C programs (<name>.c in tests/images), built static into the context as <name>.
    programs: tuple[str, ...] = ()


IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec("st-busybox"),
    ImageSpec("st-shellform", ("server.sh",)),
    ImageSpec("st-execform", ("server.sh",)),
    # Termination stories (tests/unit/test_stories.py, tests/data/stories/record.py).
    ImageSpec("st-sigign", ("sigign.sh",)),
    ImageSpec("st-noforward", ("noforward.sh", "server.sh")),
    ImageSpec("st-slowstop", ("slowstop.sh",)),
    # Hop-by-hop stories: wrappers, forwards, a blocked stop signal (tests/docker/test_hops_e2e.py).
    ImageSpec(
        "st-hops",
        (
            "server.sh",
            "wrapexit.sh",
            "forwardwait.sh",
            "outer.sh",
            "middle.sh",
            "pgrp.sh",
            "sigign.sh",
        ),
        ("blockterm",),
    ),
)
IMAGE_NAMES: tuple[str, ...] = tuple(spec.name for spec in IMAGES)


class ImageBuildError(RuntimeError):
    pass


def _check_static(path: Path) -> None:
    """A dynamically linked busybox (Debian's `busybox`, not `busybox-static`) cannot run in a
    scratch image, and fails there with a bare "no such file or directory": say so here."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageBuildError(f"{path}: {e.strerror}; install busybox-static") from e
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ImageBuildError(f"{path} is not a 64-bit ELF executable")
    # ELF64 header: e_phoff at 32, e_phentsize and e_phnum at 54 and 56 (little endian here).
    (phoff,) = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        (p_type,) = struct.unpack_from("<I", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP: needs a dynamic loader
            raise ImageBuildError(f"{path} is dynamically linked; install busybox-static")


def _context_files(spec: ImageSpec) -> dict[str, Path]:
    """Build-context name -> source path, for every input of the image."""
    files = {"Dockerfile": HERE / spec.name / "Dockerfile", "busybox": BUSYBOX}
    files.update({name: HERE / name for name in spec.files})
    files.update({f"{name}.c": HERE / f"{name}.c" for name in spec.programs})
    return files


def _compile(source: Path, out: Path) -> None:
    """A static binary: a scratch image has no C library."""
    r = subprocess.run(
        ["clang", "-static", "-O2", "-o", str(out), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        raise ImageBuildError(f"clang {source.name}: {r.stderr.strip()}")


def context_hash(spec: ImageSpec) -> str:
    h = hashlib.sha256(f"sigtrace-test-image {BUILDER_VERSION} {spec.name}\n".encode())
    for name, src in sorted(_context_files(spec).items()):
        # Mode matters too: COPY keeps the exec bit of server.sh.
        mode = src.stat().st_mode & 0o777
        h.update(f"{name}\0{mode:o}\0".encode())
        h.update(hashlib.sha256(src.read_bytes()).digest())
    return h.hexdigest()


def _docker(docker: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    # The legacy builder: Docker 23+ CLIs need the buildx plugin for BuildKit, which the
    # distribution does not install, and these Dockerfiles need nothing from BuildKit.
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    return subprocess.run(
        [docker, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def _image_state(docker: str, name: str) -> tuple[str, str] | None:
    """(image id, context hash label) of an existing image, or None if there is none."""
    r = _docker(docker, "image", "inspect", "--format", "{{json .}}", name)
    if r.returncode != 0:
        if "No such image" in r.stderr or "No such object" in r.stderr:
            return None
        raise ImageBuildError(f"docker image inspect {name}: {r.stderr.strip()}")
    info = json.loads(r.stdout)
    labels = (info.get("Config") or {}).get("Labels") or {}
    return info["Id"], labels.get(HASH_LABEL, "")


def _build(docker: str, spec: ImageSpec, digest: str) -> None:
    with tempfile.TemporaryDirectory(prefix=f"{spec.name}-ctx-") as ctx:
        for name, src in _context_files(spec).items():
            shutil.copy2(src, Path(ctx) / name)
        for name in spec.programs:
            _compile(HERE / f"{name}.c", Path(ctx) / name)
        r = _docker(
            docker,
            "build",
            "--quiet",
            "--label",
            f"{HASH_LABEL}={digest}",
            "--tag",
            spec.name,
            ctx,
            timeout=BUILD_TIMEOUT_S,
        )
    if r.returncode != 0:
        raise ImageBuildError(f"docker build {spec.name} failed:\n{r.stdout}{r.stderr}")


def ensure_images(docker: str = "docker") -> None:
    """Build every test image that is missing or whose inputs changed."""
    _check_static(BUSYBOX)
    for spec in IMAGES:
        digest = context_hash(spec)
        state = _image_state(docker, spec.name)
        if state is not None and state[1] == digest:
            log.info("%s: up to date", spec.name)
            continue
        _build(docker, spec, digest)
        if state is not None:
            # The replaced image is now dangling; drop it (fails harmlessly if a container
            # still uses it).
            _docker(docker, "image", "rm", state[0])
        log.info("%s: built (%s)", spec.name, "changed" if state else "missing")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="images: %(message)s")
    try:
        ensure_images()
    except (ImageBuildError, subprocess.TimeoutExpired, FileNotFoundError) as e:
        print(f"images: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
