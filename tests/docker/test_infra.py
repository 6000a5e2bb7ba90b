"""Proves the Docker test infrastructure reproduces the incident and its control case."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sigtrace_docker_helpers import NAME_PREFIX

if TYPE_CHECKING:  # types only: two conftest.py modules share the name at run time
    from tests.docker.conftest import ContainerFactory

pytestmark = pytest.mark.docker

STOP_GRACE_S = 2


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def proc_children(pid: int) -> list[int]:
    """Host pids whose parent is `pid`. Scans /proc: .../children needs CONFIG_PROC_CHILDREN."""
    kids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if proc_status(int(d.name)).get("PPid") == str(pid):
                kids.append(int(d.name))
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while scanning
    return kids


def test_shellform_pid1_is_a_shell_with_server_as_child(
    container_factory: ContainerFactory,
) -> None:
    c = container_factory("shellform", "st-shellform")
    c.wait_for_log("ready")
    status = proc_status(c.pid)
    # NSpid: host pid, then pid in the container's namespace: PID 1 there.
    assert status["NSpid"].split() == [str(c.pid), "1"]
    assert status["Name"] == "sh"
    assert Path(f"/proc/{c.pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"/bin/sh", b"-c"]
    kids = {pid: proc_status(pid) for pid in proc_children(c.pid)}
    servers = [pid for pid, st in kids.items() if st["Name"] == "server.sh"]
    assert len(servers) == 1, f"children of PID 1: {kids}"
    assert proc_status(servers[0])["NSpid"].split()[-1] != "1"


def test_execform_pid1_is_the_server(container_factory: ContainerFactory) -> None:
    c = container_factory("execform", "st-execform")
    c.wait_for_log("ready")
    status = proc_status(c.pid)
    assert status["NSpid"].split() == [str(c.pid), "1"]
    assert status["Name"] == "server.sh"


def test_shellform_stop_is_killed_after_grace(container_factory: ContainerFactory) -> None:
    c = container_factory("shellform-stop", "st-shellform")
    c.wait_for_log("ready")
    elapsed = c.stop(STOP_GRACE_S)
    state = c.inspect()["State"]
    # SIGTERM to a handler-less PID 1 is dropped; SIGKILL follows after the grace period.
    assert 1.5 <= elapsed <= 6.0, f"docker stop took {elapsed:.2f}s"
    assert state["ExitCode"] == 137, state
    assert "draining" not in c.logs()


def test_execform_stop_drains_within_grace(container_factory: ContainerFactory) -> None:
    c = container_factory("execform-stop", "st-execform")
    # The trap is set before "ready" is printed: a SIGTERM before it would be dropped too.
    c.wait_for_log("ready")
    elapsed = c.stop(STOP_GRACE_S)
    state = c.inspect()["State"]
    assert elapsed < 1.5, f"docker stop took {elapsed:.2f}s"
    assert state["ExitCode"] == 0, state
    assert "draining" in c.logs()


def test_factory_removes_what_it_made_even_unstarted(
    container_factory: ContainerFactory,
) -> None:
    running = container_factory("naming", "st-busybox", "sleep", "30")
    assert running.name.startswith(f"{NAME_PREFIX}naming-")
    assert running.inspect()["Config"]["Labels"].get("sigtrace.test") == "1"
    # A command that cannot start leaves a "created" container behind `docker run`'s error.
    with pytest.raises(RuntimeError, match="docker run"):
        container_factory("nostart", "st-busybox", "/no/such/binary")
    names = list(container_factory.names)
    assert len(names) == 2
    container_factory.close()
    for name in names:
        r = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"name=^{name}$"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert r.stdout.strip() == "", f"{name} survived close()"
