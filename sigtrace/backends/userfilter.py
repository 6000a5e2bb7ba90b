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
