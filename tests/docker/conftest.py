"""Fixtures for tests against the real Docker daemon (started by scripts/services in CI).

Skips only when not root. As root, a Docker daemon that does not answer is a failure, not a
skip: CI starts Docker, so a silent skip would hide a broken setup.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.images import build as images

DOCKER = "docker"
# A machine shared by several test runs can give each its own prefix to find its containers by.
NAME_PREFIX = os.environ.get("SIGTRACE_TEST_CONTAINER_PREFIX", "st-test-")
# Every test container carries it, so leftovers of a killed run can be found
# (`docker ps -a --filter label=sigtrace.test`) without touching other users' containers.
OWNER_LABEL = "sigtrace.test=1"
CMD_TIMEOUT_S = 60.0
# Every backend traces the Docker scenarios; what one cannot see is asserted, not skipped.
BACKENDS = ("core", "bcc", "tracefs", "ptrace")


# Test modules import helpers from `sigtrace_docker_helpers`: several folders have a
# conftest.py, and the name `conftest` belongs to whichever was imported last.
sys.modules.setdefault("sigtrace_docker_helpers", sys.modules[__name__])


def docker(*args: str, timeout: float = CMD_TIMEOUT_S, check: bool = True) -> str:
    """Runs the docker CLI; returns stdout. Raises with stderr in the message on failure."""
    r = subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and r.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} -> {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def inspect(ref: str) -> dict:
    """`docker inspect` of one container, as a dict."""
    return json.loads(docker("inspect", "--type", "container", ref))[0]


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    pid: int  # host pid of the container's PID 1, at start

    def inspect(self) -> dict:
        return inspect(self.id)

    def logs(self) -> str:
        # The CLI copies the container's stdout and stderr to its own; both are wanted.
        r = subprocess.run(
            [DOCKER, "logs", self.id], capture_output=True, text=True, timeout=CMD_TIMEOUT_S
        )
        return r.stdout + r.stderr

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """Polls the logs until `text` appears (e.g. a server's ready line); returns them."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.logs()
            if text in out:
                return out
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {text!r} not in logs after {timeout}s: {out!r}")
            time.sleep(0.05)

    def stop(self, grace_s: int = 10) -> float:
        """`docker stop -t grace_s`; returns the seconds it took."""
        start = time.monotonic()
        docker("stop", "-t", str(grace_s), self.id, timeout=grace_s + CMD_TIMEOUT_S)
        return time.monotonic() - start


def _opts_to_flags(opts: dict[str, object]) -> list[str]:
    """cap_add="SYS_PTRACE" -> --cap-add SYS_PTRACE; init=True -> --init; lists repeat."""
    flags: list[str] = []
    for key, value in opts.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list | tuple):
            for v in value:
                flags += [flag, str(v)]
        else:
            flags += [flag, str(value)]
    return flags


class ContainerFactory:
    """run(name, image, *args, **opts) -> Container: `docker run -d` with opts as flags
    (cap_add="SYS_PTRACE", init=True, env=["A=1", "B=2"], ...), named st-test-<name>-<hex>
    (or $SIGTRACE_TEST_CONTAINER_PREFIX<name>-<hex>).
    close() removes every container it was asked for with `docker rm -f`."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, name: str, image: str, *args: str, **opts: object) -> Container:
        full = f"{NAME_PREFIX}{name}-{secrets.token_hex(3)}"
        # Recorded before the run: a container that was created but failed to start
        # (bad command, bad flag) exists all the same and has to go.
        self.names.append(full)
        flags = _opts_to_flags(opts)
        # --pull never: there is no registry; a missing image is a bug, not a download.
        base = ["run", "-d", "--pull", "never", "--name", full, "--label", OWNER_LABEL]
        cid = docker(*base, *flags, image, *args)
        info = inspect(cid.strip())
        pid = info["State"]["Pid"]
        if not info["State"]["Running"] or pid <= 0:
            raise RuntimeError(f"{full} is not running: {info['State']}")
        return Container(id=info["Id"], name=full, pid=pid)

    def close(self) -> None:
        errors = []
        for name in self.names:
            r = subprocess.run(
                [DOCKER, "rm", "-f", name], capture_output=True, text=True, timeout=CMD_TIMEOUT_S
            )
            if r.returncode != 0 and "No such container" not in r.stderr:
                errors.append(f"{name}: {r.stderr.strip()}")
        self.names.clear()
        if errors:
            raise RuntimeError("docker rm -f failed: " + "; ".join(errors))


@pytest.fixture(scope="session")
def docker_daemon() -> None:
    """Skips unless root; fails if root and the daemon does not answer."""
    if os.geteuid() != 0:
        pytest.skip("Docker tests need root")
    hint = "start it with scripts/services"
    try:
        r = subprocess.run(
            [DOCKER, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"Docker does not answer ({e}); {hint}", pytrace=False)
    if r.returncode != 0:
        pytest.fail(f"Docker does not answer: {r.stderr.strip()}; {hint}", pytrace=False)


@pytest.fixture(scope="session")
def docker_images(docker_daemon: None) -> tuple[str, ...]:
    """Builds the st-* images if missing or stale; returns their names."""
    images.ensure_images(DOCKER)
    return images.IMAGE_NAMES


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The `--backend` a test traces with: each test runs once per backend."""
    return str(request.param)


@pytest.fixture
def container_factory(docker_images: tuple[str, ...]) -> Iterator[ContainerFactory]:
    """A ContainerFactory whose containers are all removed at teardown, pass or fail."""
    factory = ContainerFactory()
    try:
        yield factory
    finally:
        factory.close()
