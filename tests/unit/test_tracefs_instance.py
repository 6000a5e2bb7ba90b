from __future__ import annotations

import os
from pathlib import Path

from sigtrace.backends.tracefs_instance import (
    FILTER_MAX,
    and_filters,
    or_filter,
    pid_filter,
    remove_stale,
)


def test_filters() -> None:
    assert or_filter("sig", [15, 9, 15]) == "sig == 9 || sig == 15"
    assert and_filters("a == 1", "", "b == 2 || b == 3") == "(a == 1) && (b == 2 || b == 3)"
    assert and_filters("a == 1", "") == "a == 1"
    assert pid_filter(("common_pid", "pid"), [5]) == "common_pid == 5 || pid == 5"
    assert pid_filter(("pid",), range(FILTER_MAX)) == ""  # too long: user space filters


def test_remove_stale_removes_only_dead_sigtrace_instances(tmp_path: Path) -> None:
    inst, proc = tmp_path / "instances", tmp_path / "proc"
    for name in ("sigtrace-999999999", f"sigtrace-{os.getpid()}", "other", "sigtrace-x"):
        (inst / name).mkdir(parents=True)
    (proc / str(os.getpid())).mkdir(parents=True)
    assert remove_stale(str(tmp_path), str(proc)) == ["sigtrace-999999999"]
    assert sorted(os.listdir(inst)) == sorted([f"sigtrace-{os.getpid()}", "other", "sigtrace-x"])
