"""sigtrace/procfs.py against this machine's own /proc: a child process seen from its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sigtrace.procfs import Procfs, parse_cgroup

# A child that catches SIGUSR1, ignores SIGUSR2, and says so once it has.
CHILD = """
import signal, sys
signal.signal(signal.SIGUSR1, lambda *a: None)
signal.signal(signal.SIGUSR2, signal.SIG_IGN)
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def child() -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, "arg with space"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_child_as_its_parent_reads_it(child: int) -> None:
    procfs = Procfs()
    st = procfs.status(child)
    assert st is not None
    assert (st.tgid, st.tid, st.ppid, st.uid) == (child, child, os.getpid(), os.getuid())
    assert st.caught(signal.SIGUSR1) and not st.caught(signal.SIGUSR2)
    assert st.ignored(signal.SIGUSR2) and not st.ignored(signal.SIGUSR1)
    assert child in procfs.children(os.getpid()) and child in procfs.pids()
    assert procfs.tids(child)[0] == child
    cmdline = procfs.cmdline(child) or ""
    assert cmdline.startswith(f"{sys.executable} -c \\x0aimport signal")  # newlines escaped
    assert cmdline.endswith(" arg with space")
    assert procfs.pidns_inum(child) == os.stat(f"/proc/{child}/ns/pid").st_ino
    assert procfs.cgroup(child) == parse_cgroup(Path(f"/proc/{child}/cgroup").read_text())
    assert procfs.status("self") is not None


def test_a_gone_process_reads_as_nothing(tmp_path: Path) -> None:
    procfs = Procfs(str(tmp_path))
    assert procfs.status(1) is None and procfs.cmdline(1) is None and procfs.cgroup(1) is None
    assert procfs.tids(1) == [] and procfs.children(1) == [] and procfs.pids() == []
    assert procfs.pidns_inum(1) == 0 and procfs.wchan(1) == ""


def test_cgroup_paths_v1_v2_and_a_deleted_cgroup() -> None:
    paths = parse_cgroup("4:pids,memory:/docker/a\n1:name=systemd:/x\n0::/s (deleted)\nbad\n")
    assert paths.v2_path == "/s"
    assert paths.v1_paths == {"pids": "/docker/a", "memory": "/docker/a", "name=systemd": "/x"}
