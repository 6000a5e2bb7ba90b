"""Fixtures for tests against the real containerd (started by scripts/services in CI).

Containers are made with `ctr run` in the k8s.io namespace, carrying the OCI annotations
containerd's CRI plugin sets, so that PID -> pod mapping can be tested without a kubelet.
The image is st-busybox, built by Docker and imported with `docker save | ctr import`.

Skips only when not root; as root, a containerd (or Docker, which builds the image) that
does not answer is a failure: CI starts both.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.images import build as images

NAMESPACE = "k8s.io"
IMAGE = "st-busybox"
# `docker save` tags carry no registry; containerd normalises them to docker.io/library/.
IMAGE_REF = f"docker.io/library/{IMAGE}:latest"
TASK_ROOT = Path("/run/containerd/io.containerd.runtime.v2.task")
CGROUP_ROOT = Path("/sys/fs/cgroup")
ID_PREFIX = "st-test-"
CMD_TIMEOUT_S = 60.0


def ctr(*args: str, timeout: float = CMD_TIMEOUT_S, check: bool = True) -> str:
    """Runs `ctr -n k8s.io ARGS`; returns stdout. Raises with stderr in the message."""
    r = subprocess.run(
        ["ctr", "-n", NAMESPACE, *args], capture_output=True, text=True, timeout=timeout
    )
    if check and r.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args)} -> {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def cri_annotations(
    pod: str, pod_namespace: str, pod_uid: str, container: str, kind: str = "container"
) -> dict[str, str]:
    """The pod-identifying OCI annotations containerd's CRI plugin puts in config.json.
    (The real plugin also sets io.kubernetes.cri.sandbox-id and image-name; there is no
    sandbox here to point at.)"""
    return {
        "io.kubernetes.cri.container-type": kind,
        "io.kubernetes.cri.container-name": container,
        "io.kubernetes.cri.sandbox-name": pod,
        "io.kubernetes.cri.sandbox-namespace": pod_namespace,
        "io.kubernetes.cri.sandbox-uid": pod_uid,
    }


@dataclass(frozen=True)
class CtrContainer:
    id: str
    pid: int  # host pid of the task's init, from the bundle's init.pid
    log: Path  # the task's stdout and stderr
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def bundle(self) -> Path:
        return TASK_ROOT / NAMESPACE / self.id

    def config(self) -> dict:
        """The OCI runtime spec runc was given (bundle config.json)."""
        return json.loads((self.bundle / "config.json").read_text())

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """Polls the task's log (written by the shim, asynchronously) until `text` appears."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.log.read_text() if self.log.exists() else ""
            if text in out:
                return out
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.id}: {text!r} not in log after {timeout}s: {out!r}")
            time.sleep(0.05)


class CtrFactory:
    """run(name, *args, annotations=..., labels=..., cgroup=..., image=IMAGE_REF)
    -> CtrContainer: `ctr -n k8s.io run -d`, id st-test-<name>-<hex>, args as the command
    (default: the image's). close() kills and deletes every task and container it made,
    and removes the pod-level cgroup directories made for kubelet-style cgroup paths.

    Note: ctr copies --label values into the OCI annotations too (ctr quirk; the CRI does
    not), so labels show up in config.json."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.ids: list[str] = []
        self.cgroup_dirs: list[str] = []  # relative to each hierarchy, deepest first

    def __call__(
        self,
        name: str,
        *args: str,
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        cgroup: str | None = None,
        image: str = IMAGE_REF,
        cri_id: bool = False,
    ) -> CtrContainer:
        # cri_id: a 64-hex id, as the CRI makes them (and as cgroup paths are parsed).
        cid = secrets.token_hex(32) if cri_id else f"{ID_PREFIX}{name}-{secrets.token_hex(3)}"
        self.ids.append(cid)  # before the run: a created-but-unstarted container must go too
        log = self.log_dir / f"{cid}.log"
        flags = ["--log-uri", f"file://{log}"]
        for k, v in (annotations or {}).items():
            flags += ["--annotation", f"{k}={v}"]
        for k, v in (labels or {}).items():
            flags += ["--label", f"{k}={v}"]
        if cgroup is not None:
            cgroup = cgroup.replace("{id}", cid)
            flags += ["--cgroup", cgroup]
            # runc makes the parents and removes only the leaf: remember what to clean.
            parent = cgroup.rsplit("/", 1)[0]
            self.cgroup_dirs.append(parent.strip("/"))
        ctr("run", "-d", *flags, image, cid, *args)
        pid = int((TASK_ROOT / NAMESPACE / cid / "init.pid").read_text())
        return CtrContainer(id=cid, pid=pid, log=log, annotations=dict(annotations or {}))

    def close(self) -> None:
        errors = []
        for cid in self.ids:
            # -f: SIGKILL the task and wait for it before deleting.
            for args in (("tasks", "delete", "-f", cid), ("containers", "delete", cid)):
                r = subprocess.run(
                    ["ctr", "-n", NAMESPACE, *args],
                    capture_output=True,
                    text=True,
                    timeout=CMD_TIMEOUT_S,
                )
                if r.returncode != 0 and "not found" not in r.stderr:
                    errors.append(f"ctr {' '.join(args)}: {r.stderr.strip()}")
        self.ids.clear()
        for rel in self.cgroup_dirs:
            _remove_cgroup_dir(rel)
        self.cgroup_dirs.clear()
        if errors:
            raise RuntimeError("; ".join(errors))


def _remove_cgroup_dir(rel: str, timeout: float = 5.0) -> None:
    """rmdir CGROUP_ROOT/<hierarchy>/rel in every hierarchy (v1 controllers, name=systemd,
    unified). Waits out EBUSY while runc's leaf removal lands."""
    for hierarchy in CGROUP_ROOT.iterdir():
        path = hierarchy / rel
        deadline = time.monotonic() + timeout
        while path.is_dir():
            try:
                path.rmdir()
            except OSError as e:
                if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def _answers(cmd: list[str], what: str) -> None:
    hint = "start it with scripts/services"
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"{what} does not answer ({e}); {hint}", pytrace=False)
    if r.returncode != 0:
        pytest.fail(f"{what} does not answer: {r.stderr.strip()}; {hint}", pytrace=False)


@pytest.fixture(scope="session")
def containerd_daemon() -> None:
    """Skips unless root; fails if root and containerd (or Docker) does not answer."""
    if os.geteuid() != 0:
        pytest.skip("containerd tests need root")
    _answers(["ctr", "version"], "containerd")
    _answers(["docker", "info", "--format", "{{.ServerVersion}}"], "Docker (builds the image)")


@pytest.fixture(scope="session")
def containerd_image(containerd_daemon: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """st-busybox in containerd's k8s.io namespace; returns its reference. Imported every
    session (2 MB, well under a second): the content is deduplicated by digest anyway."""
    images.ensure_images("docker")
    tar = tmp_path_factory.mktemp("image") / f"{IMAGE}.tar"
    subprocess.run(
        ["docker", "save", "-o", str(tar), f"{IMAGE}:latest"], check=True, timeout=CMD_TIMEOUT_S
    )
    ctr("images", "import", str(tar))
    tar.unlink()
    return IMAGE_REF


@pytest.fixture
def ctr_factory(containerd_image: str, tmp_path: Path) -> Iterator[CtrFactory]:
    """A CtrFactory whose tasks and containers are all removed at teardown, pass or fail."""
    factory = CtrFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    uid: str


@pytest.fixture
def cri_pod() -> Pod:
    return Pod(name="web-7f9c", namespace="shop", uid=str(uuid.uuid4()))


@pytest.fixture
def cri_container(ctr_factory: CtrFactory, cri_pod: Pod) -> CtrContainer:
    """Container "app" of pod shop/web-7f9c, as containerd's CRI would run it with kubelet's
    cgroupfs driver: CRI annotations, cgroup /kubepods/besteffort/pod<uid>/<id>."""
    return ctr_factory(
        "app",
        "sleep",
        "3600",
        annotations=cri_annotations(cri_pod.name, cri_pod.namespace, cri_pod.uid, "app"),
        cgroup=f"/kubepods/besteffort/pod{cri_pod.uid}/{{id}}",
        cri_id=True,
    )
