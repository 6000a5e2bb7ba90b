"""The boundary where the kernel side's bytes become Python records.

Mirrors bpf/sigtrace.h field for field; tests/unit/test_wire_layout.py checks every
name, offset and size against the BTF of the compiled object. Decoding is pure: bytes in,
records out, so recorded streams replay without root. The tracefs and BCC backends build
the same records from their own sources.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple, TypeAlias

ABI_VERSION = 3

KIND_GENERATE = 1
KIND_DELIVER = 2
KIND_SYSCALL = 3
KIND_EXIT = 4
KIND_OOM = 5

SYS_KILL = 1
SYS_TKILL = 2
SYS_TGKILL = 3
SYS_PIDFD_SEND_SIGNAL = 4
SYS_RT_SIGQUEUEINFO = 5
SYS_RT_TGSIGQUEUEINFO = 6
SYSCALL_NAMES = {
    SYS_KILL: "kill",
    SYS_TKILL: "tkill",
    SYS_TGKILL: "tgkill",
    SYS_PIDFD_SEND_SIGNAL: "pidfd_send_signal",
    SYS_RT_SIGQUEUEINFO: "rt_sigqueueinfo",
    SYS_RT_TGSIGQUEUEINFO: "rt_tgsigqueueinfo",
}

INFO_NOINFO = 0
INFO_PRIV = 1
INFO_PTR = 2

HANDLER_DFL = 0
HANDLER_IGN = 1
HANDLER_FUNC = 2

F_UNKILLABLE = 1 << 0
F_BLOCKED = 1 << 1
F_SYSCALL = 1 << 2
F_TEARDOWN = 1 << 3
F_PTRACED = 1 << 4
F_GROUP_EXIT = 1 << 5
F_OOM_VICTIM = 1 << 6
F_CORE_DUMPED = 1 << 7
F_WAITING = 1 << 8
F_FANOUT = 1 << 9
F_CAUGHT = 1 << 10

# (name, struct format) in declaration order; a tuple value is a nested struct.
Layout: TypeAlias = tuple[tuple[str, "str | Layout"], ...]
HEADER: Layout = (("ts_ns", "Q"), ("kind", "I"), ("cpu", "I"))
TASK: Layout = (
    ("cgroup_id", "Q"),
    ("cgroup_v1_id", "Q"),
    ("pid", "I"),
    ("tid", "I"),
    ("ns_pid", "I"),
    ("ns_tid", "I"),
    ("pidns_inum", "I"),
    ("uid", "I"),
    ("comm", "16s"),
)
LAYOUTS: dict[str, Layout] = {
    "st_header": HEADER,
    "st_task": TASK,
    "st_generate": (
        ("hdr", HEADER),
        ("syscall_seq", "Q"),
        ("sys_nr", "i"),
        ("req_pid", "i"),
        ("sys_flags", "I"),
        ("_pad", "I"),
        ("sig", "i"),
        ("code", "i"),
        ("si_errno", "i"),
        ("si_pid", "i"),
        ("si_uid", "I"),
        ("info_kind", "I"),
        ("group", "i"),
        ("result", "i"),
        ("handler", "I"),
        ("flags", "I"),
        ("caught", "Q"),
        ("sender", TASK),
        ("target", TASK),
    ),
    "st_deliver": (
        ("hdr", HEADER),
        ("sig", "i"),
        ("code", "i"),
        ("si_pid", "i"),
        ("info_kind", "I"),
        ("handler", "I"),
        ("group_exit_code", "i"),
        ("flags", "I"),
        ("_pad", "I"),
        ("task", TASK),
    ),
    "st_syscall": (
        ("hdr", HEADER),
        ("seq", "Q"),
        ("ret", "q"),
        ("nr", "i"),
        ("sig", "i"),
        ("req_pid", "i"),
        ("req_tid", "i"),
        ("count", "I"),
        ("sys_flags", "I"),
        ("sender", TASK),
    ),
    "st_exit": (
        ("hdr", HEADER),
        ("exit_code", "i"),
        ("flags", "I"),
        ("caught", "Q"),
        ("task", TASK),
    ),
    "st_oom": (("hdr", HEADER), ("victim", TASK), ("trigger", TASK)),
}


def flat_format(layout: Layout) -> str:
    return "".join(flat_format(f) if isinstance(f, tuple) else f for _, f in layout)


def struct_of(name: str) -> struct.Struct:
    # "=": native byte order, standard sizes, no implicit padding (the C side has none).
    return struct.Struct("=" + flat_format(LAYOUTS[name]))


class Task(NamedTuple):
    cgroup_id: int
    cgroup_v1_id: int
    # None: not known. The kernel side records every field; a backend that reads /proc
    # (tracefs, BCC, ptrace) finds some of them gone with the process (output: null).
    pid: int | None
    tid: int | None
    ns_pid: int | None
    ns_tid: int | None
    pidns_inum: int
    uid: int | None
    comm: str | None


class Generate(NamedTuple):
    ts_ns: int
    cpu: int
    syscall_seq: int
    sys_nr: int
    req_pid: int
    sys_flags: int
    sig: int
    code: int
    si_errno: int
    si_pid: int
    si_uid: int
    info_kind: int
    group: int
    result: int
    handler: int | None  # None: unknown (a /proc-reading backend found the target gone)
    flags: int
    sender: Task
    target: Task
    # Fields a backend took from /proc at event time instead of from the kernel's own state
    # (tracefs, BCC, ptrace); empty for CO-RE. Unknown values are None, never guessed.
    derived: tuple[str, ...] = ()
    # `target_state.*` fields this backend could not know for this signal (its flag bit would
    # read false): null in the output.
    unknown: tuple[str, ...] = ()
    # The target's handler mask (bit n-1: a handler function for signal n) when a SIGKILL was
    # generated; None elsewhere and where it is not known.
    caught: int | None = None


class Deliver(NamedTuple):
    ts_ns: int
    cpu: int
    sig: int
    code: int
    si_pid: int
    info_kind: int
    handler: int | None  # None: unknown (ptrace cannot see the disposition in time)
    group_exit_code: int
    flags: int
    task: Task
    derived: tuple[str, ...] = ()


class Syscall(NamedTuple):
    ts_ns: int
    cpu: int
    seq: int
    ret: int
    nr: int
    sig: int
    req_pid: int
    req_tid: int
    generated: int  # st_syscall.count: the signals this call generated
    sys_flags: int
    sender: Task
    # As Generate's: the sender's fields a backend took from /proc (a failed call's record).
    derived: tuple[str, ...] = ()


class Exit(NamedTuple):
    ts_ns: int
    cpu: int
    exit_code: int  # wait status
    flags: int
    task: Task
    caught: int | None = None  # the process's handler mask at its exit, as Generate's
    derived: tuple[str, ...] = ()  # as Generate's (`caught`: read from /proc)
    # ptrace: F_OOM_VICTIM comes from the cgroup's OOM counter; unreadable, it is unknown
    oom_unknown: bool = False


class Oom(NamedTuple):
    ts_ns: int
    cpu: int
    victim: Task
    trigger: Task


Record = Generate | Deliver | Syscall | Exit | Oom

_GEN = struct_of("st_generate")
_DEL = struct_of("st_deliver")
_SYS = struct_of("st_syscall")
_EXIT = struct_of("st_exit")
_OOM = struct_of("st_oom")
_KIND = struct.Struct("=QII")
SIZES = {
    KIND_GENERATE: _GEN.size,
    KIND_DELIVER: _DEL.size,
    KIND_SYSCALL: _SYS.size,
    KIND_EXIT: _EXIT.size,
    KIND_OOM: _OOM.size,
}


def _prefix(name: str) -> struct.Struct:
    """The fields before a record's first task (every record ends in its tasks)."""
    fields = LAYOUTS[name]
    n = next(i for i, (_, f) in enumerate(fields) if f is TASK)
    return struct.Struct("=" + flat_format(fields[:n]))


_TASK = struct_of("st_task")
_TASK_SIZE = _TASK.size
_GEN_HEAD = _prefix("st_generate")
_DEL_HEAD = _prefix("st_deliver")
_SYS_HEAD = _prefix("st_syscall")
_EXIT_HEAD = _prefix("st_exit")
_OOM_HEAD = _prefix("st_oom")
# The same few tasks send and receive most signals: a task's 56 bytes map to one Task, so
# a storm decodes each of them once (bounded: cleared when full).
_tasks: dict[bytes, Task] = {}
_TASKS_MAX = 1024  # a storm has few senders; churn brings new tasks all the time


def comm_text(raw: bytes) -> str:
    # comm is kernel-truncated and may hold any byte: decode losslessly, escape on output.
    return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def _task_at(data: bytes, off: int) -> Task:
    raw = data[off : off + _TASK_SIZE]
    task = _tasks.get(raw)
    if task is None:
        v = _TASK.unpack(raw)
        cg, cg1, pid, tid, ns_pid, ns_tid, inum, uid, comm = v
        task = Task(cg, cg1, pid, tid, ns_pid, ns_tid, inum, uid, comm_text(comm))
        if len(_tasks) >= _TASKS_MAX:
            _tasks.clear()
        _tasks[raw] = task
    return task


class DecodeError(ValueError):
    pass


# A storm's records differ only in their timestamp: the bytes after it (kind, cpu, the rest)
# map to the record's other fields, decoded once (bounded: cleared when full).
_records: dict[bytes, tuple[type, tuple[Any, ...]]] = {}
_RECORDS_MAX = 1024
_TS = struct.Struct("=Q")
_tuple_new = tuple.__new__


def decode(data: bytes) -> Record:
    """One ring-buffer record → one typed record."""
    if type(data) is not bytes:
        data = bytes(data)
    key = data[8:]
    hit = _records.get(key)
    if hit is not None:
        cls, rest = hit
        return _tuple_new(cls, (_TS.unpack_from(data)[0], *rest))
    rec = _decode(data)
    if len(_records) >= _RECORDS_MAX:
        _records.clear()
    _records[key] = (type(rec), rec[1:])
    return rec


def _decode(data: bytes) -> Record:
    if len(data) < _KIND.size:
        raise DecodeError(f"record of {len(data)} bytes is shorter than its header")
    kind = _KIND.unpack_from(data)[1]
    size = SIZES.get(kind)
    if size is None:
        raise DecodeError(f"unknown record kind {kind}")
    if len(data) < size:
        raise DecodeError(f"record kind {kind}: {len(data)} bytes, expected {size}")
    # By keyword: each name is its LAYOUTS field's (hdr: ts_ns, kind, cpu).
    if kind == KIND_GENERATE:
        ts, _, cpu, seq, sys_nr, req_pid, sys_flags, _pad, sig, code, *rest = _GEN_HEAD.unpack_from(
            data
        )
        si_errno, si_pid, si_uid, info_kind, group, result, handler, flags, caught = rest
        off = _GEN_HEAD.size
        return Generate(
            ts_ns=ts,
            cpu=cpu,
            syscall_seq=seq,
            sys_nr=sys_nr,
            req_pid=req_pid,
            sys_flags=sys_flags,
            sig=sig,
            code=code,
            si_errno=si_errno,
            si_pid=si_pid,
            si_uid=si_uid,
            info_kind=info_kind,
            group=group,
            result=result,
            handler=handler,
            flags=flags,
            sender=_task_at(data, off),
            target=_task_at(data, off + _TASK_SIZE),
            caught=caught if flags & F_CAUGHT else None,
        )
    if kind == KIND_DELIVER:
        ts, _, cpu, sig, code, si_pid, info_kind, handler, gcode, flags, _pad = (
            _DEL_HEAD.unpack_from(data)
        )
        return Deliver(
            ts_ns=ts,
            cpu=cpu,
            sig=sig,
            code=code,
            si_pid=si_pid,
            info_kind=info_kind,
            handler=handler,
            group_exit_code=gcode,
            flags=flags,
            task=_task_at(data, _DEL_HEAD.size),
        )
    if kind == KIND_SYSCALL:
        ts, _, cpu, seq, ret, nr, sig, req_pid, req_tid, count, sys_flags = _SYS_HEAD.unpack_from(
            data
        )
        return Syscall(
            ts_ns=ts,
            cpu=cpu,
            seq=seq,
            ret=ret,
            nr=nr,
            sig=sig,
            req_pid=req_pid,
            req_tid=req_tid,
            generated=count,
            sys_flags=sys_flags,
            sender=_task_at(data, _SYS_HEAD.size),
        )
    if kind == KIND_EXIT:
        ts, _, cpu, exit_code, flags, caught = _EXIT_HEAD.unpack_from(data)
        return Exit(
            ts_ns=ts,
            cpu=cpu,
            exit_code=exit_code,
            flags=flags,
            task=_task_at(data, _EXIT_HEAD.size),
            caught=caught if flags & F_CAUGHT else None,
        )
    ts, _, cpu = _OOM_HEAD.unpack_from(data)
    off = _OOM_HEAD.size
    return Oom(
        ts_ns=ts, cpu=cpu, victim=_task_at(data, off), trigger=_task_at(data, off + _TASK_SIZE)
    )
