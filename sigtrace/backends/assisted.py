"""The driver half that the /proc-assisted backends (bcc, tracefs) share.

Their kernel sides see tracepoint fields only: /proc fills in the rest (`TaskFacts`), the
user-space filters match what the kernel cannot (`Filters`), and exit codes come from the
process-events connector, joined with the kernel side's exit events. Each subclass reads its
own kernel side (a ring buffer, a trace_pipe) and says how to widen its --pid filter.
"""

from __future__ import annotations

import os
import time
from abc import abstractmethod
from collections.abc import Callable

from sigtrace import wire
from sigtrace.backends import NO_SYSCALLS_NO_REGS, Backend
from sigtrace.backends.procevents import ProcEvents, ProcExit
from sigtrace.backends.proctask import TaskFacts
from sigtrace.backends.userfilter import Filters
from sigtrace.config import TraceConfig
from sigtrace.containers.cgroup_ids import CgroupIds
from sigtrace.errors import BackendError
from sigtrace.procfs import Procfs

# How often --pid's threads and the followed containers' processes are looked up again.
FOLLOW_NS = 500_000_000


class ProcAssistedBackend(Backend):
    def __init__(self, config: TraceConfig) -> None:
        super().__init__(config)
        self.procfs = Procfs(config.proc_root)
        self.events: ProcEvents | None = None
        self.facts: TaskFacts | None = None
        self.cgroups: CgroupIds | None = None
        self.filters = Filters()
        self._missing: list[str] = []  # what this run cannot see, beyond the backend's own
        self._deferred_exits: list[ProcExit] = []
        self._primed: set[int] = set()
        self._followed_at = 0

    # --- open ---------------------------------------------------------------------------------

    def _open_facts(self, pids: set[int] | frozenset[int]) -> TaskFacts:
        """/proc and the cgroup ids, and the user-space filters (`pids`: --pid's, or their
        threads for a kernel side that filters by thread)."""
        cfg = self.config
        self.cgroups = CgroupIds(sys_root=cfg.sys_root)
        self.facts = TaskFacts(self.procfs, self.cgroups)
        self.filters = Filters(
            pids=pids, cgroups_active=cfg.filters_cgroups, cgroup_ids=set(cfg.cgroup_ids)
        )
        return self.facts

    def _open_events(self) -> None:
        try:
            self.events = ProcEvents()
        except BackendError as exc:
            self._missing.append(f"exit codes: {exc.message}")

    def _kill_calls(self, tracefs: str) -> list[str]:
        """The kill-family calls to hook: none without --syscalls, else those whose enter and
        exit tracepoints `tracefs` (a root or an instance) has; the rest go into cannot_see."""
        if not self.config.syscalls:
            self._missing.append(NO_SYSCALLS_NO_REGS)
            return []
        names = list(wire.SYSCALL_NAMES.values())
        events = os.path.join(tracefs, "events", "syscalls")
        missing = [
            name
            for name in names
            if not all(os.path.isdir(f"{events}/sys_{e}_{name}") for e in ("enter", "exit"))
        ]
        if missing:
            self._missing.append(
                f"kill-family syscalls ({', '.join(missing)}: no tracepoint): no fan-out "
                "counts, no EPERM/ESRCH failures for them"
            )
        return [name for name in names if name not in missing]

    def _pid_tids(self, remember: bool) -> set[int]:
        """--pid's processes and their threads now (the kernel filter matches thread ids);
        `remember`: read each process's identity afresh, so that its exit is known even if
        it is never signalled."""
        tids = set(self.config.pids)
        for pid in self.config.pids:
            tids.update(self.procfs.tids(pid))
            if remember and self.facts is not None:
                self.facts.identity(pid, fresh=True)
        return tids

    def add_cgroup_ids(self, ids: set[int]) -> None:
        if self.facts is None:
            raise BackendError("backend is not open")
        self.filters.cgroup_ids |= ids

    # --- while tracing ------------------------------------------------------------------------

    def _follow(self) -> None:
        """Now and then: --pid's new threads into the kernel filter, and who is in the
        followed containers into the facts."""
        now = time.monotonic_ns()
        if now - self._followed_at < FOLLOW_NS:
            return
        self._followed_at = now
        if self.config.pids:
            self._follow_threads()
        if self.filters.cgroups_active:
            self._prime()

    @abstractmethod
    def _follow_threads(self) -> None:
        """Widen the kernel side's --pid filter to threads started since."""

    def _prime(self) -> None:
        """Read who is in the followed containers: a process killed before its record is
        handled is gone from /proc, and its signal would lose its container."""
        assert self.cgroups is not None and self.facts is not None
        seen = self.cgroups.pids_in(self.filters.cgroup_ids)
        for pid in seen - self._primed:
            self.facts.identity(pid)
        self._primed = seen

    def _take_exits(self) -> list[ProcExit]:
        """The connector's exits, with those held back last time. Read them before the kernel
        side: its exit event is traced before proc_exit_connector() sends, so each exit read
        now has its event in what is read next, unless that read stopped short."""
        exits = self._deferred_exits + (self.events.read() if self.events else [])
        self._deferred_exits = []
        return exits

    def _join_exits(
        self,
        exits: list[ProcExit],
        read_all: bool,
        proc_exit: Callable[[ProcExit], list[wire.Record]],
    ) -> list[wire.Record]:
        """Exit records for `exits`, or none yet when the kernel side was not read to the
        end (`read_all`): they are held back for the next round."""
        if not read_all:
            self._deferred_exits = exits
            return []
        return [rec for e in exits for rec in proc_exit(e)]

    def lost_total(self) -> int:
        return self._kernel_lost() + (self.events.overruns if self.events is not None else 0)

    @abstractmethod
    def _kernel_lost(self) -> int:
        """Events the kernel side dropped."""

    def _close_events(self) -> None:
        if self.events is not None:
            self.events.close()
            self.events = None
