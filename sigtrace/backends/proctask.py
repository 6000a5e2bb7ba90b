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

import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

from sigtrace import signals, wire
from sigtrace.containers.cgroup_ids import CgroupIds
from sigtrace.containers.cgroup_path import parse_proc_cgroup
from sigtrace.procfs import Procfs

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
class Status:
    """The parts of /proc/<tid>/status the backends use."""

    name: str
    state: str  # R, S, D, T, t, Z, X...
    tgid: int
    tid: int
    ns_pid: int  # the process's id in its own (deepest) pid namespace
    ns_tid: int
    ns_depth: int  # 1 in the host's namespace
    uid: int
    sig_blk: int
    sig_ign: int
    sig_cgt: int
    tracer_pid: int
    pending: int = 0  # SigPnd | ShdPnd: queued for the thread or for its process

    @property
    def dispositions_known(self) -> bool:
        # A zombie has released its sighand: its SigCgt/SigIgn read 0, which is not SIG_DFL.
        return self.state not in ("Z", "X")

    def handler(self, sig: int) -> int:
        bit = 1 << (sig - 1)
        if self.sig_cgt & bit:
            return wire.HANDLER_FUNC
        if self.sig_ign & bit:
            return wire.HANDLER_IGN
        return wire.HANDLER_DFL

    def blocked(self, sig: int) -> bool:
        return bool(self.sig_blk & (1 << (sig - 1)))

    def blocked_when_sent(self, sig: int) -> bool | None:
        """Was `sig` blocked when it was sent, judged from this later read? None: can't tell.

        The kernel blocks a signal while its handler runs: a caught signal that is blocked
        but no longer pending was most likely read in its own handler, after it was
        delivered, and the mask it met when sent is unknown (not "blocked", which would
        make it pending).
        """
        bit = 1 << (sig - 1)
        if not self.sig_blk & bit:
            return False
        if self.sig_cgt & bit and not self.pending & bit:
            return None
        return True

    @property
    def unkillable(self) -> bool:
        # copy_process() gives every pid namespace's init SIGNAL_UNKILLABLE (the host's too).
        return self.ns_pid == 1


def parse_status(text: str) -> Status | None:
    """/proc/<tid>/status text → Status; None when a field it needs is missing. Pure."""
    f: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        f[key] = value.strip()
    if f.get("Tgid") == "0":
        # Read while release_task() detached its pids (State X): Tgid, NStgid and NSpid all
        # read 0, which is no pid at all. Unknown, not pid 0 (nor a namespace's init).
        return None
    try:
        nspid = f.get("NSpid", f["Pid"]).split()
        nstgid = f.get("NStgid", f["Tgid"]).split()
        return Status(
            name=f.get("Name", ""),
            state=f.get("State", "?")[:1],
            tgid=int(f["Tgid"]),
            tid=int(f["Pid"]),
            ns_pid=int(nstgid[-1]),
            ns_tid=int(nspid[-1]),
            ns_depth=len(nstgid),
            uid=int(f["Uid"].split()[0]),
            sig_blk=int(f["SigBlk"], 16),
            sig_ign=int(f["SigIgn"], 16),
            sig_cgt=int(f["SigCgt"], 16),
            tracer_pid=int(f.get("TracerPid", "0")),
            pending=int(f.get("SigPnd", "0"), 16) | int(f.get("ShdPnd", "0"), 16),
        )
    except (KeyError, ValueError, IndexError):
        return None


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
        raw = self.procfs.read(tid, "status")
        if raw is None:
            return None
        st = parse_status(raw.decode("utf-8", "backslashreplace"))
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
            inum = self._pidns_inum(st.tid)
        task = wire.Task(cg, cg1, st.tgid, st.tid, st.ns_pid, st.ns_tid, inum, st.uid, st.name)
        self._ids[st.tid] = Identity(task, st.ns_depth, time.monotonic_ns())
        self._ids.move_to_end(st.tid)
        if len(self._ids) > CACHE_MAX:
            self._ids.popitem(last=False)

    def _cgroup_ids(self, tid: int) -> tuple[int, int]:
        """(v2 id, v1 pids id) as the kernel side records them; 0 where unknown."""
        if self.cgroups is None:
            return 0, 0
        raw = self.procfs.read(tid, "cgroup")
        if not raw:
            return 0, 0
        info = parse_proc_cgroup(raw.decode("utf-8", "backslashreplace"))
        v2 = self.cgroups.id_of(info.v2_path, "v2") if info.v2_path else None
        v1_path = info.v1_paths.get("pids")
        v1 = self.cgroups.id_of(v1_path, "v1pids") if v1_path else None
        return v2 or 0, v1 or 0

    def _pidns_inum(self, tid: int) -> int:
        try:
            link = os.readlink(os.path.join(self.procfs.root, str(tid), "ns", "pid"))
        except OSError:
            return 0
        # "pid:[4026531836]"
        digits = link.rpartition("[")[2].rstrip("]")
        return int(digits) if digits.isdigit() else 0


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
