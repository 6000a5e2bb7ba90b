"""What to trace: the settings every backend takes. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from sigtrace import signals


class Filters(TypedDict):
    """The start record's `filters`."""

    signals: list[str]
    pids: list[int]
    cgroup_ids: list[int]
    containers: list[str]
    pods: list[str]


@dataclass(frozen=True)
class TraceConfig:
    signals: frozenset[int] = frozenset(signals.DEFAULT_SIGNALS)
    pids: tuple[int, ...] = ()
    cgroup_ids: tuple[int, ...] = ()
    # --container / --pod: resolved to cgroup ids at start, and followed (--wait, restarts).
    containers: tuple[str, ...] = ()
    pods: tuple[str, ...] = ()
    wait: bool = False
    ringbuf_bytes: int = 4 << 20
    # Hook the kill-family syscalls (failed calls, fan-out counts): any syscall hook taxes
    # every syscall on the host, so off unless asked for; the call of each signal is read
    # from its sender's registers where possible.
    syscalls: bool = False
    verbose: bool = False
    # Where the host's files are: a DaemonSet mounts them elsewhere.
    proc_root: str = "/proc"
    sys_root: str = "/sys"

    def filters(self) -> Filters:
        return {
            "signals": [signals.name(s) for s in sorted(self.signals)],
            "pids": list(self.pids),
            "cgroup_ids": list(self.cgroup_ids),
            "containers": list(self.containers),
            "pods": list(self.pods),
        }

    @property
    def ringbuf_size(self) -> int:
        """The BPF ring buffer's size: a power of two pages (the kernel's rule), at least
        ringbuf_bytes."""
        size = 4096
        while size < self.ringbuf_bytes:
            size <<= 1
        return size

    @property
    def filters_cgroups(self) -> bool:
        return bool(self.cgroup_ids or self.containers or self.pods)
