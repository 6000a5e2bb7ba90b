"""Rootful Podman, for real: `sigtrace --container NAME` finds a Podman container by its name
(containers/storage under /var/lib/containers and /run/containers, no Podman API), and the stop's
records and verdict carry that name.

The image comes from Docker (`docker save | podman load`): no registry. Podman's default rlimits
(nofile and nproc at 1048576) exceed what this VM lets runc set, hence the explicit --ulimit.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sigtrace_docker_helpers import NAME_PREFIX, OWNER_LABEL

from tests.tracing import REPO, Record, check_schema

pytestmark = pytest.mark.docker

IMAGE = "st-execform"  # server.sh as PID 1: drains on SIGTERM and exits 0
PODMAN_IMAGE = f"localhost/{IMAGE}"
GRACE_S = 2
CMD_TIMEOUT_S = 60.0
VERDICT_TIMEOUT_S = 8.0


def podman(*args: str, stdin: bytes | None = None) -> str:
    r = subprocess.run(
        ["podman", *args], input=stdin, capture_output=True, timeout=CMD_TIMEOUT_S, check=False
    )
    if r.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} -> {r.returncode}: {r.stderr.decode()}")
    return r.stdout.decode()


@pytest.fixture
def podman_container(docker_images: tuple[str, ...]) -> Iterator[tuple[str, str, int]]:
    """(name, id, PID 1's host pid) of a running Podman container, removed at teardown."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed; scripts/setup installs it", pytrace=False)
    if subprocess.run(["podman", "image", "exists", PODMAN_IMAGE], check=False).returncode:
        saved = subprocess.run(
            ["docker", "save", IMAGE], capture_output=True, check=True, timeout=CMD_TIMEOUT_S
        ).stdout
        podman("load", stdin=saved)
    name = f"{NAME_PREFIX}podman-{secrets.token_hex(3)}"
    try:
        cid = podman(
            "run", "-d", "--name", name, "--label", OWNER_LABEL,
            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
            PODMAN_IMAGE,
        ).strip()  # fmt: skip
        pid = int(podman("inspect", "-f", "{{.State.Pid}}", cid))
        yield name, cid, pid
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True, check=False)


def _records(path: Path) -> list[Record]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _wait(path: Path, kind: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(r["type"] == kind for r in _records(path)):
        if time.monotonic() > deadline:
            pytest.fail(f"no {kind} record after {timeout}s: {path.read_text()[-2000:]}")
        time.sleep(0.05)


def test_a_podman_stop_is_told_by_the_containers_name(
    podman_container: tuple[str, str, int], tmp_path: Path
) -> None:
    name, cid, pid = podman_container
    out, err = tmp_path / "trace.jsonl", tmp_path / "trace.err"
    cmd = [sys.executable, "-m", "sigtrace", "--container", name, "--format", "jsonl"]
    env = {**os.environ, "SIGTRACE_DOCKER_SOCKET": str(tmp_path / "no-docker.sock")}
    with open(out, "w") as f, open(err, "w") as e:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=e, env=env)
    try:
        _wait(out, "start", 15.0)
        podman("stop", "-t", str(GRACE_S), name)
        _wait(out, "verdict", VERDICT_TIMEOUT_S)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    assert proc.returncode == 0, err.read_text()
    recs = _records(out)
    check_schema(recs)
    want = {"id": cid, "name": name, "runtime": "podman", "image": f"{PODMAN_IMAGE}:latest"}
    (term,) = [
        r
        for r in recs
        if r["type"] == "signal" and r["signal"] == "SIGTERM" and r["target"]["pid"] == pid
    ]
    assert term["target"]["pid1"] and term["outcome"] == "delivered"
    assert {k: term["target"]["container"][k] for k in want} == want
    (v,) = [r for r in recs if r["type"] == "verdict"]
    assert {k: v["container"][k] for k in want} == want
    assert (v["verdict"], v["exit_code"]) == ("graceful", 0)
