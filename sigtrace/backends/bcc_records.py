"""The BCC program's records (bcc_program.c) → the same wire records as the CO-RE backend.

The kernel side numbers kill-family calls and counts what each generated, filters by signal
and pid, and records only tracepoint fields and the current task's ids. What it cannot read
without a task_struct comes from /proc when the record is handled (`TaskFacts`): the target's
tgid, namespace pids, uid, dispositions, blocked mask and tracer, every task's namespace pid.
Those fields are listed in the record's `derived`; what /proc no longer has is None.

Exit codes are not in any tracepoint: a group-dead sched_process_exit record waits here for
its wait status from the process-events connector (`procevents`), matched by tid.
"""

from __future__ import annotations

import struct
import time
from collections import namedtuple
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from sigtrace import wire
from sigtrace.backends.assisted_records import AssistedRecords, Delivered, Sent
from sigtrace.backends.group_exits import bounded_set
from sigtrace.backends.procevents import ProcExit
from sigtrace.backends.proctask import Identity, TaskFacts, unknown_task
from sigtrace.backends.userfilter import Filters
from sigtrace.procfs import Status

# Flags of bcc_program.c: wire.F_SYSCALL, F_OOM_VICTIM and F_FANOUT mean what they do in
# bpf/sigtrace.h (which the program includes); these are its own, above the shared bits.
BT_F_USER_SIGINFO = 1 << 16
BT_F_TRACKED = 1 << 17
BT_F_SENDER_EXITING = 1 << 18
# Why the program's `tracked` map holds a process (track()): its exit is reported either way.
TRACK_SIGNALLED = 1
TRACK_OOM_VICTIM = 2
_KERNEL_FLAGS = wire.F_SYSCALL | wire.F_FANOUT

# bcc_program.c's structs as wire.LAYOUTS lays out sigtrace.h's: (name, struct format) in
# declaration order, a tuple value a nested struct; every record ends in its current task.
# tests/unit/test_kernel_abi.py compares them with the C source.
BT_TASK: wire.Layout = (
    ("cgroup_id", "Q"),
    ("pid", "I"),
    ("tid", "I"),
    ("uid", "I"),
    ("_pad", "I"),
    ("comm", "16s"),
)
BT_LAYOUTS: dict[str, wire.Layout] = {
    "bt_task": BT_TASK,
    "bt_generate": (
        ("hdr", wire.HEADER),
        ("seq", "Q"),
        ("sys_nr", "i"),
        ("req_pid", "i"),
        ("sys_flags", "I"),
        ("flags", "I"),
        ("sig", "i"),
        ("code", "i"),
        ("si_errno", "i"),
        ("group", "i"),
        ("result", "i"),
        ("target_tid", "i"),
        ("target_comm", "16s"),
        ("sender", BT_TASK),
    ),
    "bt_deliver": (
        ("hdr", wire.HEADER),
        ("sig", "i"),
        ("code", "i"),
        ("si_errno", "i"),
        ("_pad", "I"),
        ("sa_handler", "Q"),
        ("sa_flags", "Q"),
        ("task", BT_TASK),
    ),
    # st_syscall's fields, with the BCC task
    "bt_syscall": (*wire.LAYOUTS["st_syscall"][:-1], ("sender", BT_TASK)),
    "bt_exit": (("hdr", wire.HEADER), ("flags", "I"), ("_pad", "I"), ("task", BT_TASK)),
    "bt_oom": (
        ("hdr", wire.HEADER),
        ("victim_tid", "i"),
        ("victim_uid", "I"),  # _NO_UID: the tracepoint has no uid field
        ("victim_comm", "16s"),
        ("trigger", BT_TASK),
    ),
}
_BY_KIND = {
    wire.KIND_GENERATE: "bt_generate",
    wire.KIND_DELIVER: "bt_deliver",
    wire.KIND_SYSCALL: "bt_syscall",
    wire.KIND_EXIT: "bt_exit",
    wire.KIND_OOM: "bt_oom",
}


def _struct(layout: wire.Layout) -> struct.Struct:
    return struct.Struct("=" + wire.flat_format(layout))  # "=": no implicit padding


def _field_names(layout: wire.Layout) -> list[str]:
    """The head's fields, a nested header's inlined (ts_ns, kind, cpu, ...)."""
    return [
        n
        for name, f in layout
        for n in (_field_names(f) if name == "hdr" and isinstance(f, tuple) else [name])
    ]


# Field names computed from the layouts: a namedtuple type only at run time (typed Any).
_record_type: Callable[..., Any] = namedtuple
BtTask = _record_type("BtTask", _field_names(BT_TASK), rename=True)
_TASK_FIELDS = len(BT_TASK)


class _Kind(NamedTuple):
    layout: struct.Struct
    head: Any  # a namedtuple type: the fields before the task, by name


_KINDS = {
    kind: _Kind(
        _struct(BT_LAYOUTS[name]),
        _record_type(name, _field_names(BT_LAYOUTS[name][:-1]), rename=True),
    )
    for kind, name in _BY_KIND.items()
}
# -D flags: the C side asserts its struct sizes against these at compile time.
SIZE_DEFINES = {f"{name.upper()}_SIZE": _struct(layout).size for name, layout in BT_LAYOUTS.items()}
_NO_UID = 0xFFFFFFFF
T = TypeVar("T")
# A group-dead exit whose wait status has not come from the connector by then is dropped.
EXIT_WAIT_NS = 2_000_000_000


def pack(name: str, **fields: Any) -> bytes:
    """A bcc_program.c record from its fields by name (a nested struct: a dict; 0 if absent),
    as the program writes it: for tests and recorded streams."""
    return _struct(BT_LAYOUTS[name]).pack(*_values(BT_LAYOUTS[name], fields))


def _values(layout: wire.Layout, fields: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for name, f in layout:
        if isinstance(f, tuple):
            out += _values(f, fields if name == "hdr" else fields.get(name, {}))
        else:
            out.append(fields.get(name, b"" if f.endswith("s") else 0))
    return out


class Decoded(NamedTuple):
    kind: int
    r: Any  # the record's fields by name (its _KINDS head)
    task: Any  # BtTask: the current task, as the kernel side recorded it (helpers only)


def _once(cache: dict[int, T], tid: int, read: Callable[[int], T]) -> T:
    """/proc read once per batch."""
    if tid not in cache:
        cache[tid] = read(tid)
    return cache[tid]


class PendingExit(NamedTuple):
    ts_ns: int
    cpu: int
    flags: int
    task: wire.Task
    tracked: bool
    seen_ns: int


def _subject(rec: wire.Record) -> wire.Task | None:
    """The process a record is about: its exit is reported."""
    if isinstance(rec, wire.Generate):
        return rec.target
    if isinstance(rec, wire.Deliver):
        return rec.task
    if isinstance(rec, wire.Oom):
        return rec.victim
    return None


class BccTranslator(AssistedRecords):
    """bcc_program.c's records in, events for AssistedRecords, wire records out.
    `track(tgid, TRACK_*)` tells the kernel side about a process it knows only by another
    thread's id (its exit is then reported)."""

    def __init__(
        self,
        facts: TaskFacts,
        wanted: frozenset[int],
        filters: Filters,
        track: Callable[[int, int], None] = lambda tgid, bits: None,
    ) -> None:
        super().__init__(facts, wanted, filters)
        self.track = track
        self.exiting: dict[int, PendingExit] = {}  # tid → its group-dead exit, awaiting a code
        self.exit_codes = True  # False: no connector, so no exit records
        # /proc as read for this batch of records: a flood reads each process once per batch,
        # not once per signal (it is read after the signals either way), and a process that
        # is gone is looked for once.
        self._status: dict[int, Status | None] = {}
        self._idents: dict[int, Identity | None] = {}
        self._tasks: dict[tuple[object, ...], tuple[wire.Task, Identity | None]] = {}
        self._tracked: set[int] = set()
        # (tid or tgid, sig) → when this batch last saw it delivered
        self._delivered: dict[tuple[int, int], int] = {}
        # tid → tgid, as the kernel side recorded them for current tasks (bounded)
        self.tgid_of: dict[int, int] = {}
        self.reported: dict[int, bool] = {}  # tgids in a reported signal: their exit is too

    def build(self, batch: list[bytes]) -> list[wire.Record]:
        """One batch of the ring buffer's records, decoded first and then built, so that
        what /proc says (read after all of them) is weighed against what followed."""
        self._status.clear()
        self._idents.clear()
        self._tasks.clear()
        self._tracked.clear()
        self._delivered.clear()
        decoded = [self._decode(data) for data in batch]
        for d in decoded:
            bounded_set(self.tgid_of, d.task.tid, d.task.pid)
            if d.kind == wire.KIND_DELIVER:
                self._delivered[(d.task.pid, d.r.sig)] = d.r.ts_ns
                self._delivered[(d.task.tid, d.r.sig)] = d.r.ts_ns
        out = [rec for d in decoded if (rec := self._build(d)) is not None]
        for rec in out:
            task = _subject(rec)
            if task is not None and task.pid is not None:
                bounded_set(self.reported, task.pid, True)
        return out

    @staticmethod
    def _decode(data: bytes) -> Decoded:
        kind = struct.unpack_from("=I", data, 8)[0] if len(data) >= 16 else 0
        k = _KINDS.get(kind)
        if k is None or len(data) < k.layout.size:
            raise wire.DecodeError(f"BCC record kind {kind}, {len(data)} bytes")
        v = k.layout.unpack_from(data)
        n = len(v) - _TASK_FIELDS
        return Decoded(kind, k.head._make(v[:n]), BtTask._make(v[n:]))

    def _build(self, d: Decoded) -> wire.Record | None:
        if d.kind == wire.KIND_EXIT:
            self._exit(d.r, d.task)
            return None
        build = {
            wire.KIND_GENERATE: self._generate,
            wire.KIND_DELIVER: self._deliver,
            wire.KIND_SYSCALL: self._syscall,
        }.get(d.kind, self._oom)
        return build(d.r, d.task)

    # --- tasks ----------------------------------------------------------------------------

    def _identity(self, tid: int, tgid: int | None = None) -> Identity | None:
        """/proc's view of a thread (or of its process); None when gone or reused."""
        ident = _once(self._idents, tid, self.facts.identity)
        if ident is None and tgid is not None and tgid != tid:
            ident = _once(self._idents, tgid, self.facts.identity)
        if ident is not None and tgid is not None and ident.task.pid != tgid:
            return None  # the id now names another process
        return ident

    def _current(self, k: Any) -> tuple[wire.Task, Identity | None]:
        """A record's current task (a BtTask): the kernel's ids, uid, comm and v2 cgroup;
        namespace ids and v1 cgroup from /proc."""
        hit = self._tasks.get(k)
        if hit is None:
            hit = self._tasks[k] = self._merge(k)
        return hit

    def _target(self, tid: int, raw_comm: bytes) -> tuple[wire.Task, Identity | None]:
        """A signal's target: only its tid and comm are the kernel's."""
        key = (tid, raw_comm)
        hit = self._tasks.get(key)
        if hit is None:
            ident = self._identity(tid)
            comm = wire.comm_text(raw_comm)
            if ident is not None:
                hit = ident.task._replace(tid=tid, comm=comm), ident
            else:  # gone: its tgid is known if the kernel side recorded it running
                hit = unknown_task(self.tgid_of.get(tid), tid, comm), None
            self._tasks[key] = hit
        return hit

    def _track_once(self, tgid: int, bits: int) -> None:
        if tgid not in self._tracked:
            self._tracked.add(tgid)
            self.track(tgid, bits)

    def _merge(self, k: Any) -> tuple[wire.Task, Identity | None]:
        ident = self._identity(k.tid, k.pid)
        comm = wire.comm_text(k.comm)
        if ident is None:  # /proc had no answer: the namespace ids are not known
            return wire.Task(k.cgroup_id, 0, k.pid, k.tid, None, None, 0, k.uid, comm), None
        t = ident.task
        ns_tid = t.ns_tid if t.tid == k.tid else None
        task = wire.Task(
            k.cgroup_id, t.cgroup_v1_id, k.pid, k.tid, t.ns_pid, ns_tid, t.pidns_inum, k.uid, comm
        )
        return task, ident

    # --- records --------------------------------------------------------------------------

    def _generate(self, r: Any, k: Any) -> wire.Generate | None:
        ttid, kflags = r.target_tid, r.flags
        sender, sident = self._current(k)
        st = _once(
            self._status, ttid, self.facts.status
        )  # dispositions change: read them for every batch
        target, tident = self._target(ttid, r.target_comm)
        rec = self.signal(
            Sent(
                ts_ns=r.ts_ns,
                cpu=r.cpu,
                sig=r.sig,
                code=r.code,
                si_errno=r.si_errno,
                group=r.group,
                result=r.result,
                flags=kflags & _KERNEL_FLAGS,
                seq=r.seq,
                sys_nr=r.sys_nr,
                req_pid=r.req_pid,
                sys_flags=r.sys_flags,
                user_siginfo=bool(kflags & BT_F_USER_SIGINFO),
                teardown=bool(kflags & BT_F_SENDER_EXITING),
                sender=sender,
                sender_read=("ns_pid",) if sident else (),
                sender_ident=sident,
                target_tid=ttid,
                target=target,
                target_ident=tident,
                target_status=st,
                delivered_since=self._delivered.get((target.pid or ttid, r.sig), 0) > r.ts_ns,
            )
        )
        if rec is not None and tident is not None and target.pid not in (None, ttid):
            self._track_once(target.pid, TRACK_SIGNALLED)  # the kernel knows only its tid
        return rec

    def _deliver(self, r: Any, k: Any) -> wire.Deliver | None:
        task, ident = self._current(k)
        read = ("ns_pid",) if ident else ()
        return self.delivery(Delivered(r.ts_ns, r.cpu, r.sig, r.code, r.sa_handler, task, read))

    def _syscall(self, r: Any, k: Any) -> wire.Syscall | None:
        sender, sident = self._current(k)
        # The kernel side applied userfilter.call_is_news, but sees no target's cgroup: a
        # failure's sender (or the pid it named) is matched here.
        call = wire.Syscall(
            r.ts_ns, r.cpu, r.seq, r.ret, r.nr, r.sig, r.req_pid, r.req_tid, r.count,
            r.sys_flags, sender,
        )  # fmt: skip
        read = ("ns_pid",) if sident else ()
        return self.syscall(call, read, news=None if r.count == 0 else True)

    def _oom(self, r: Any, k: Any) -> wire.Oom | None:
        vtid = r.victim_tid
        trigger, _ = self._current(k)
        ident = self._identity(vtid)
        comm = wire.comm_text(r.victim_comm)
        if ident is not None:
            victim = ident.task._replace(tid=vtid, comm=comm or ident.task.comm)
            if victim.pid not in (None, vtid):
                self.track(victim.pid, TRACK_OOM_VICTIM)
        else:
            victim = unknown_task(None, vtid, comm)
        if r.victim_uid != _NO_UID:
            victim = victim._replace(uid=r.victim_uid)
        if self.filters.any and not self.filters.matches(victim):
            return None
        return wire.Oom(r.ts_ns, r.cpu, victim, trigger)

    # --- exits ----------------------------------------------------------------------------

    def _exit(self, r: Any, k: Any) -> None:
        if not self.exit_codes:
            return
        ts, cpu, kflags = r.ts_ns, r.cpu, r.flags
        task, _ = self._current(k)
        tid: int = k.tid  # the kernel's (task.tid too, typed int | None for /proc's tasks)
        if kflags & BT_F_TRACKED:
            _once(
                self._status, tid, self.facts.status
            )  # its handlers for the exit record, if not a zombie yet
        pending = PendingExit(
            ts, cpu, kflags, task, bool(kflags & BT_F_TRACKED), time.monotonic_ns()
        )
        bounded_set(self.exiting, tid, pending)

    def proc_exit(self, e: ProcExit) -> list[wire.Record]:
        """A task's wait status from the connector: an exit record for a group-dead exit
        that the kernel side reported (it comes before the connector's message)."""
        p = self.exiting.pop(e.tid, None)
        if p is None:
            self.facts.forget(e.tid)
            return []
        pid = p.task.pid
        # The kernel side tracks every target it let through; with filters, user space
        # dropped some of those, and only what it reported took part.
        if self.filters.any:
            took_part = pid is not None and self.reported.pop(pid, False)
        else:
            took_part = p.tracked
        oom = bool(p.flags & wire.F_OOM_VICTIM)
        return self.exit(p.ts_ns, p.cpu, e, p.task, oom=oom, took_part=took_part)

    def oldest_pending_exit(self) -> int | None:
        """The time of the oldest exit still waiting for its code."""
        return min((p.ts_ns for p in self.exiting.values()), default=None)

    def expire(self, now_ns: int) -> None:
        """Drop exits whose code never came (the connector overflowed or is missing)."""
        for tid in [t for t, p in self.exiting.items() if now_ns - p.seen_ns > EXIT_WAIT_NS]:
            p = self.exiting.pop(tid)
            if p.task.pid is not None:
                self.group_exit.pop(p.task.pid, None)
