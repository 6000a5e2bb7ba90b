"""The user-space half of the filters, for backends whose kernel side cannot see the target's
cgroup (bcc, tracefs): the same rule as task_matches() in bpf/sigtrace.bpf.c. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from sigtrace import wire


@dataclass
class Filters:
    pids: set[int] | frozenset[int] = frozenset()  # --pid's processes (bcc adds their threads)
    cgroups_active: bool = False
    cgroup_ids: set[int] = field(default_factory=set)

    @property
    def any(self) -> bool:
        return bool(self.pids) or self.cgroups_active

    def matches(self, task: wire.Task) -> bool:
        """Every active filter must pass."""
        if self.pids and task.pid not in self.pids and task.tid not in self.pids:
            return False
        if self.cgroups_active:
            ids = self.cgroup_ids
            return bool(task.cgroup_id and task.cgroup_id in ids) or bool(
                task.cgroup_v1_id and task.cgroup_v1_id in ids
            )
        return True

    def call_traced(self, sender: wire.Task, req_pid: int) -> bool:
        """A call's sender, or the pid it named, passes the filters."""
        named = bool(self.pids) and req_pid in self.pids
        return not self.any or named or self.matches(sender)


def call_is_news(emitted: int, fanout: bool, count: int, ret: int) -> bool | None:
    """Whether a finished kill-family call gets its own record: True, False, or None for
    "if its sender (or the pid it named) is traced" (Filters.call_traced). The rule of
    call_news() in bpf/sigtrace_rules.h, which both BPF programs share."""
    # A single-target call's signal carried everything already; only a fan-out's count
    # and a failure are news (that halves the records of a kill() storm).
    if emitted > 0:
        return fanout
    # Its signals were all filtered out, or it sent none: only a failure is news,
    # and only when its sender (or the pid it named) is one we trace.
    if count > 0 or ret >= 0:
        return False
    return None
