"""How many times the OOM killer killed in a process's memory cgroup: `oom_kill` in
`memory.events` (cgroup v2) or `memory.oom_control` (v1). The edge a backend that cannot see the
OOM killer (ptrace) reads before calling a SIGKILL anything else."""

from __future__ import annotations

import os

from sigtrace.procfs import Procfs


def counter_file(procfs: Procfs, sys_root: str, pid: int) -> str | None:
    """The file holding `oom_kill` for pid's memory cgroup, or None (gone, no memory cgroup)."""
    info = procfs.cgroup(pid)
    if info is None:
        return None
    base = os.path.join(sys_root, "fs/cgroup")
    v1 = info.v1_paths.get("memory")
    if v1 is not None:
        path = os.path.join(base, "memory", v1.lstrip("/"), "memory.oom_control")
        if os.path.exists(path):
            return path
    for root in (base, os.path.join(base, "unified")):
        if info.v2_path is not None:
            path = os.path.join(root, info.v2_path.lstrip("/"), "memory.events")
            if os.path.exists(path):
                return path
    return None


def read_oom_kills(path: str) -> int | None:
    """The `oom_kill` count in a memory.events / memory.oom_control file; None if unreadable."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


class OomCounters:
    """For each tracked process its memory cgroup's counter file, and for each file the count
    already accounted for: a SIGKILL exit finding the count above it was the OOM killer's."""

    def __init__(self, procfs: Procfs, sys_root: str) -> None:
        self.procfs = procfs
        self.sys_root = sys_root
        self.files: dict[int, str | None] = {}
        self.seen: dict[str, int | None] = {}

    def track(self, pid: int) -> None:
        path = counter_file(self.procfs, self.sys_root, pid)
        self.files[pid] = path
        if path is not None and path not in self.seen:
            self.seen[path] = read_oom_kills(path)

    def killed(self, pid: int) -> bool | None:
        """Whether pid's SIGKILL was the OOM killer's; None when the counter can't be read."""
        path = self.files.pop(pid, None)
        if path is None:
            return None
        before = self.seen.get(path)
        now = read_oom_kills(path)
        if now is None or before is None:
            return None
        if now > before:
            self.seen[path] = before + 1  # one kill per victim: the next exit needs another
            return True
        return False

    def forget(self, pid: int) -> None:
        self.files.pop(pid, None)
