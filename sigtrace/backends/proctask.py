"""What the backends without BPF learn about a task from /proc, at the moment they look.

The CO-RE backend reads these facts from the task_struct when the signal is generated; the
tracefs and ptrace backends read /proc/<tid>/status (and the task's cgroup and pid namespace)
when they handle the event, so every record built from them lists those fields in `derived`.
What cannot be read (the task is gone) is None, never a guess.

Identity (tgid, namespace pids, cgroups) does not change over a task's life and is kept per
tid until the task exits; dispositions and the blocked mask change and are read every time.
The handler mask (SigCgt) last read per process is kept for its exit record: by the time an
exit is handled the process is a zombie, whose SigCgt reads 0.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

from sigtrace import signals, wire
from sigtrace.containers.cgroup_ids import CgroupIds
from sigtrace.procfs import Procfs, Status

# A sender's identity is re-read after this long (its uid may change; pids get reused).
IDENTITY_TTL_NS = 1_000_000_000
CACHE_MAX = 8192
# The start record's `cannot_see` for the backends that read a SIGKILL's `caught` from /proc.
CAUGHT_FROM_PROC = (
    "target_state.caught of a SIGKILL: /proc SigCgt read when the record is handled (listed "
    "in `derived`), null when the target was already gone (usually: SIGKILL is quick); an "
    "exit's `caught`: the SigCgt last read while the process lived (a signal to it, "
    "--pid/--container first seeing it, its exit), so a handler set after that is missed "
    "(`derived`; null if never read)"
)


@dataclass(frozen=True)
class Identity:
    task: wire.Task
    ns_depth: int
    seen_ns: int


class TaskFacts:
    """/proc/<tid> as wire.Task and Status, with identities cached per tid."""

    def __init__(self, procfs: Procfs, cgroups: CgroupIds | None = None) -> None:
        self.procfs = procfs
        self.cgroups = cgroups
        self._ids: OrderedDict[int, Identity] = OrderedDict()
        self._caught: OrderedDict[int, int] = OrderedDict()  # tgid → SigCgt last read

    def status(self, tid: int) -> Status | None:
        st = self.procfs.status(tid)
        if st is not None:
            self._remember(st)
            if st.dispositions_known:
                self._caught[st.tgid] = st.sig_cgt
                self._caught.move_to_end(st.tgid)
                if len(self._caught) > CACHE_MAX:
                    self._caught.popitem(last=False)
        return st

    def caught(self, tgid: int) -> int | None:
        """The process's handler mask (SigCgt) as last read while it lived; None: never read."""
        return self._caught.get(tgid)

    def identity(self, tid: int, fresh: bool = False) -> Identity | None:
        """The task as last read (re-read when older than IDENTITY_TTL_NS or `fresh`)."""
        ident = self._ids.get(tid)
        if ident is None or fresh or time.monotonic_ns() - ident.seen_ns > IDENTITY_TTL_NS:
            self.status(tid)  # refreshes the cache when the task is still there
            ident = self._ids.get(tid, ident)
        return ident

    def task(self, tid: int, comm: str | None = None) -> wire.Task | None:
        ident = self.identity(tid)
        if ident is None:
            return None
        return ident.task if comm is None else ident.task._replace(comm=comm)

    def forget(self, tid: int) -> None:
        self._ids.pop(tid, None)
        self._caught.pop(tid, None)  # a process's (tid == tgid): its pid may come back

    def _remember(self, st: Status) -> None:
        old = self._ids.get(st.tid)
        if old is not None and old.task.pid == st.tgid:
            cg, cg1, inum = old.task.cgroup_id, old.task.cgroup_v1_id, old.task.pidns_inum
        else:
            cg, cg1 = self._cgroup_ids(st.tid)
            inum = self.procfs.pidns_inum(st.tid)
        task = wire.Task(cg, cg1, st.tgid, st.tid, st.ns_pid, st.ns_tid, inum, st.uid, st.name)
        self._ids[st.tid] = Identity(task, st.ns_depth, time.monotonic_ns())
        self._ids.move_to_end(st.tid)
        if len(self._ids) > CACHE_MAX:
            self._ids.popitem(last=False)

    def _cgroup_ids(self, tid: int) -> tuple[int, int]:
        """(v2 id, v1 pids id) as the kernel side records them; 0 where unknown."""
        if self.cgroups is None:
            return 0, 0
        info = self.procfs.cgroup(tid)
        if info is None:
            return 0, 0
        v2 = self.cgroups.id_of(info.v2_path, "v2") if info.v2_path else None
        v1_path = info.v1_paths.get("pids")
        v1 = self.cgroups.id_of(v1_path, "v1pids") if v1_path else None
        return v2 or 0, v1 or 0


class SentState(NamedTuple):
    """The target's side of a signal as /proc tells it later (`target_state_when_sent`)."""

    handler: int | None
    blocked: bool | None
    flags: int  # wire.F_BLOCKED, wire.F_PTRACED
    derived: list[str]
    unknown: list[str]
    caught: int | None = None  # a SIGKILL's: the target's SigCgt (None for other signals)


def target_state_when_sent(st: Status | None, sig: int, delivered_since: bool) -> SentState:
    """The handler, blocked mask and tracer a signal met, from /proc read when its record is
    handled (`derived`); None, listed in `unknown`, where that read cannot tell. Pure.

    `delivered_since`: a delivery of it came after it was sent, before /proc was read: the
    mask read then is its handler's, and it was not blocked when sent.
    """
    if st is None or not st.dispositions_known:
        return SentState(None, None, 0, [], ["target_state.blocked", "target_state.ptraced"])
    blocked = False if delivered_since else st.blocked_when_sent(sig)
    flags = (wire.F_BLOCKED if blocked else 0) | (wire.F_PTRACED if st.tracer_pid else 0)
    read = ["target_state.handler", "target_state.blocked", "target_state.ptraced"]
    # A task being SIGKILLed runs no more user code: the handlers read later are its last.
    caught = st.sig_cgt if sig == signals.SIGKILL else None
    if caught is not None:
        read.append("target_state.caught")
    if blocked is None:
        read.remove("target_state.blocked")
        return SentState(st.handler(sig), None, flags, read, ["target_state.blocked"], caught)
    return SentState(st.handler(sig), blocked, flags, read, [], caught)


def unknown_task(pid: int | None, tid: int | None, comm: str | None = None) -> wire.Task:
    """A task whose /proc is gone: only what the event itself said. comm None: unknown (not
    "", which would read as the task's name in the output)."""
    return wire.Task(
        cgroup_id=0,
        cgroup_v1_id=0,
        pid=pid,
        tid=tid,
        ns_pid=None,
        ns_tid=None,
        pidns_inum=0,
        uid=None,
        comm=comm,
    )


def exit_record(
    ts_ns: int, cpu: int, status: int, task: wire.Task, caught: int | None, oom: bool | None
) -> wire.Exit:
    """A process's end: its wait status, and its handlers (`caught`) as /proc last read them.
    `oom` None: whether the OOM killer ended it could not be told."""
    flags = (wire.F_CORE_DUMPED if status & 0x80 else 0) | (wire.F_OOM_VICTIM if oom else 0)
    derived = ("caught",) if caught is not None else ()
    return wire.Exit(ts_ns, cpu, status, flags, task, caught, derived, oom_unknown=oom is None)


def si_pid_seen_by(sender: Identity, target: Identity) -> int | None:
    """kill()'s si_pid as the target receives it, from the two tasks' pid namespaces.

    prepare_kill_siginfo() stores the sender's pid in its own namespace, and send_signal_locked()
    zeroes it when the sender is not visible from the target's namespace (an ancestor's).
    Visible: same namespace, or the target's is the host's. Invisible: the sender is no
    deeper than the target in another namespace. Anything else cannot be told from /proc.
    """
    s, t = sender.task, target.task
    if s.pidns_inum and s.pidns_inum == t.pidns_inum:
        return s.ns_pid
    if target.ns_depth == 1:
        return s.ns_pid
    if sender.ns_depth <= target.ns_depth and s.pidns_inum and t.pidns_inum:
        return 0
    return None
