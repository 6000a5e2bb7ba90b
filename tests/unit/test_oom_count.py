"""The OOM counter a backend that never sees SIGKILL (ptrace) reads before a SIGKILL exit is
called a runtime kill: the files on fake cgroup trees, and what the stories make of it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from test_stories import load, run

from sigtrace.containers.oom_count import OomCounters, counter_file, read_oom_kills
from sigtrace.procfs import Procfs

CID = "ab" * 32


def fake(tmp_path: Path, v1: bool) -> tuple[Procfs, str, Path]:
    proc = tmp_path / "proc" / "42"
    proc.mkdir(parents=True)
    if v1:
        (proc / "cgroup").write_text(f"9:memory:/docker/{CID}\n1:name=systemd:/docker/{CID}\n")
        d = tmp_path / "sys/fs/cgroup/memory/docker" / CID
        name, text = "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill {}\n"
    else:
        (proc / "cgroup").write_text(f"0::/system.slice/docker-{CID}.scope\n")
        d = tmp_path / f"sys/fs/cgroup/system.slice/docker-{CID}.scope"
        name, text = "memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill {}\noom_group_kill 0\n"
    d.mkdir(parents=True)
    (d / name).write_text(text.format(0))
    return Procfs(str(tmp_path / "proc")), str(tmp_path / "sys"), d / name


@pytest.mark.parametrize("v1", [True, False], ids=["v1", "v2"])
def test_counter_is_found_and_a_rise_is_one_oom_kill(tmp_path: Path, v1: bool) -> None:
    procfs, sys_root, path = fake(tmp_path, v1)
    assert counter_file(procfs, sys_root, 42) == str(path) and read_oom_kills(str(path)) == 0
    counters = OomCounters(procfs, sys_root)
    counters.track(42)
    assert counters.killed(42) is False  # no rise: not the OOM killer's
    counters.track(42)
    path.write_text(path.read_text().replace("oom_kill 0", "oom_kill 1"))
    assert counters.killed(42) is True
    counters.track(42)
    assert counters.killed(42) is False  # that one kill is accounted for


def test_counter_unreadable_is_unknown(tmp_path: Path) -> None:
    procfs, sys_root, path = fake(tmp_path, v1=False)
    counters = OomCounters(procfs, sys_root)
    counters.track(42)
    path.unlink()
    assert counters.killed(42) is None
    assert counters.killed(7) is None  # never tracked


def ptrace_kill(oom: bool | None) -> list[dict]:
    records = copy.deepcopy(load("ptrace-kill"))
    for r in records:
        if r["type"] == "exit" and r["process"]["pid1"]:
            r["oom"] = oom
    return records


def test_ptrace_sigkill_with_the_oom_counter_risen_is_oom_killed() -> None:
    (v,) = run(ptrace_kill(True))
    assert v["verdict"] == "oom_killed" and "memory" in v["hint"]


def test_ptrace_sigkill_with_the_counter_unread_says_it_may_be_oom() -> None:
    (v,) = run(ptrace_kill(None))
    assert v["verdict"] == "killed_without_stop_signal"
    assert "OOM counter could not be read" in v["caveat"]
    (v,) = run(ptrace_kill(False))
    assert "OOM" not in (v["caveat"] or "")
