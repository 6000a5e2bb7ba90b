"""Turns the kernel side's records into sigtrace.v1 output records. Pure.

It joins the signals one kill-family syscall generated into one fan-out (the syscall's
record comes after them, from the same thread, so they wait for it), reports a syscall
that failed before generating anything, and classifies every record. Naming a process
(cmdline, container) is the injected `describe`: the edges read /proc, tests do not.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from sigtrace import SCHEMA, signals, wire
from sigtrace.classify import (
    HANDLER_NAMES,
    RESULT_NAMES,
    action_of,
    exit_status,
    failed_outcome,
    is_fanout_request,
    outcome_of,
    scope_of_generate,
    scope_of_syscall,
)
from sigtrace.escape import printable

Out = dict[str, Any]
# describe(task, role) -> the process object; role is "sender", "target" or "process".
Describe = Callable[[wire.Task, str], dict[str, Any]]
# How long signals wait for their syscall's record before going out without it.
SYSCALL_WAIT_NS = 1_000_000_000
# Process objects are built once per task and reused (read-only) for this long, so that a
# name learned later (a runtime that answered late) still shows up.
MEMO_NS = 1_000_000_000
MEMO_MAX = 8192
# A storm repeats a handful of records; a host of distinct ones would only fill memory (each
# shape is a whole output record, ~1.5 KB): the shapes are cleared when this many.
SHAPES_MAX = 512


def basic_process(task: wire.Task, role: str = "process") -> dict[str, Any]:
    return {
        "pid": task.pid,
        "tid": task.tid,
        "ns_pid": task.ns_pid,
        "comm": None if task.comm is None else printable(task.comm),  # None: not known
        "pid1": None if task.ns_pid is None else task.ns_pid == 1,
        "uid": task.uid,
    }


class Correlator:
    def __init__(self, time_of: Callable[[int], str], describe: Describe = basic_process) -> None:
        self.time_of = time_of
        self.describe = describe
        # syscall seq -> generate records waiting for their syscall's record
        self._waiting: dict[int, list[wire.Generate]] = {}
        # heap of (ts_ns, tie, record): ready, but held until nothing older can still come
        self._hold: list[tuple[int, int, Out]] = []
        self._tie = itertools.count()
        self._memo: dict[tuple[wire.Task, str], dict[str, Any]] = {}
        self._memo_since = 0
        # A storm repeats the same signal and delivery: each distinct record's output (all
        # but its time, a function of the record and the names in _memo) is built once and
        # copied; forgotten with the names it holds. Keyed by the fields after ts and cpu.
        self._shapes: dict[tuple[Any, ...], Out] = {}

    def _proc(self, task: wire.Task, role: str) -> dict[str, Any]:
        key = (task, role)
        d = self._memo.get(key)
        if d is None:
            if len(self._memo) >= MEMO_MAX:
                self._forget()
            d = self._memo[key] = self.describe(task, role)
        return d

    def _forget(self) -> None:
        self._memo.clear()
        self._shapes.clear()

    def _shape(self, rec: wire.Generate | wire.Deliver, out: Out) -> Out:
        """Keeps a copy of out for rec's repeats (same fields but ts and cpu) to start from."""
        if len(self._shapes) >= SHAPES_MAX:
            self._shapes.clear()
        # A Generate's and a Deliver's field tuples differ in length: never equal.
        self._shapes[rec[2:]] = out.copy()  # top level only: nested objects are read-only
        return out

    def _base(self, kind: str, ts_ns: int) -> Out:
        return {"schema": SCHEMA, "type": kind, "time": self.time_of(ts_ns)}

    def feed(self, rec: wire.Record) -> list[Out]:
        """Output records now ready, in time order."""
        shape = self._shapes.get(rec[2:])
        if shape is not None:  # a repeat (a storm): only the time differs
            out = shape.copy()
            out["time"] = self.time_of(rec.ts_ns)
        elif isinstance(rec, wire.Generate):
            if rec.flags & wire.F_FANOUT:
                if rec.syscall_seq:  # its count comes with the syscall's own record
                    self._waiting.setdefault(rec.syscall_seq, []).append(rec)
                    return []
                # read from registers (no --syscalls): no record of the call will follow
                fan = {"id": None, "count": None, "requested": rec.req_pid}
                out = self._shape(rec, self._signal(rec, fan))
            else:
                out = self._shape(rec, self._signal(rec, None))
        elif isinstance(rec, wire.Syscall):
            for ts, o in self._syscall(rec):
                self._hold_back(ts, o)
            return self._release()
        elif isinstance(rec, wire.Deliver):
            out = self._shape(rec, self._deliver(rec))
        elif isinstance(rec, wire.Exit):
            out = self._exit(rec)
        else:
            out = self._oom(rec)
        if not self._waiting and not self._hold:
            return [out]  # nothing in flight: the common case costs no heap
        self._hold_back(rec.ts_ns, out)
        return self._release()

    def _hold_back(self, ts_ns: int, out: Out) -> None:
        heapq.heappush(self._hold, (ts_ns, next(self._tie), out))

    def _release(self) -> list[Out]:
        """Records older than every signal still waiting for its syscall, in time order.

        The ring buffer orders records by reservation, so a delivery on one CPU can come
        before the syscall that sent it finished on another; holding back keeps the story
        in order. A heap: a sender that dies inside kill() holds things back for a second.
        """
        hold = self._hold
        # The first waiting call is the oldest one: records arrive in (nearly) time order,
        # and a min() over them all would cost O(waiting) per record when many are overdue.
        mark = next(iter(self._waiting.values()))[0].ts_ns if self._waiting else None
        ready = []
        while hold and (mark is None or hold[0][0] < mark):
            ready.append(heapq.heappop(hold)[2])
        return ready

    def flush(self, now_ns: int | None = None) -> list[Out]:
        """Signals whose syscall record is overdue (or all, at the end) go out without it."""
        if now_ns is not None and now_ns - self._memo_since > MEMO_NS:
            self._forget()
            self._memo_since = now_ns
        for seq in list(self._waiting):
            gens = self._waiting[seq]
            if now_ns is None or now_ns - gens[0].ts_ns > SYSCALL_WAIT_NS:
                del self._waiting[seq]
                for g in gens:
                    self._hold_back(g.ts_ns, self._signal(g, None))
        return self._release()

    def pending(self) -> bool:
        """Records held back: flush() has work to do even when no record comes."""
        return bool(self._waiting or self._hold)

    def idle(self) -> None:
        """Before a wait of any length: names described now may be stale by the next record."""
        self._forget()

    def lost(self, count: int, ts_ns: int, reason: str = "buffer") -> Out:
        """`reason`: "buffer", the kernel could not hand them over; "output", sigtrace could
        not write them (the daemon's output failing)."""
        out = self._base("lost", ts_ns)
        out["count"] = count
        out["reason"] = reason
        return out

    def _syscall(self, sc: wire.Syscall) -> list[tuple[int, Out]]:
        gens = self._waiting.pop(sc.seq, [])
        if not gens:
            return [(sc.ts_ns, self._failed(sc))] if sc.ret < 0 else []
        fanout = {"id": sc.seq, "count": sc.generated, "requested": sc.req_pid}
        return [(g.ts_ns, self._signal(g, fanout)) for g in gens]

    def _signal(self, g: wire.Generate, fanout: Mapping[str, int | None] | None) -> Out:
        oc = outcome_of(g.sig, g.result, g.handler, g.flags)
        out = self._base("signal", g.ts_ns)
        out["signal"] = signals.name(g.sig)
        out["signo"] = g.sig
        out["code"] = signals.code_name(g.sig, g.code)
        out["sender"] = self._proc(g.sender, "sender")
        out["target"] = self._proc(g.target, "target")
        out["outcome"] = oc.outcome
        out["reason"] = oc.reason
        via_syscall = bool(g.flags & wire.F_SYSCALL)
        if via_syscall:
            out["scope"] = scope_of_syscall(g.sys_nr, g.req_pid, g.sys_flags)
        else:
            out["scope"] = scope_of_generate(g.flags, g.group)
        out["fanout"] = fanout
        out["syscall"] = wire.SYSCALL_NAMES.get(g.sys_nr) if via_syscall else None
        out["result"] = RESULT_NAMES.get(g.result, str(g.result))
        state = out["target_state"] = {
            "handler": None if g.handler is None else HANDLER_NAMES.get(g.handler, "?"),
            "blocked": bool(g.flags & wire.F_BLOCKED),
            "unkillable": bool(g.flags & wire.F_UNKILLABLE),
            "ptraced": bool(g.flags & wire.F_PTRACED),
            "waiting": bool(g.flags & wire.F_WAITING),
            # who had work to do when a SIGKILL came: its handlers (null: not read)
            "caught": None if g.caught is None else signals.names_of_mask(g.caught),
        }
        for path in g.unknown:  # a flag not set is not a fact: what was not known is null
            state[path.removeprefix("target_state.")] = None
        out["si_pid"] = g.si_pid if g.info_kind == wire.INFO_PTR else None
        if g.derived:
            out["derived"] = list(g.derived)
        return out

    def _failed(self, sc: wire.Syscall) -> Out:
        oc = failed_outcome(sc.ret)
        out = self._base("signal", sc.ts_ns)
        out["signal"] = signals.name(sc.sig)
        out["signo"] = sc.sig
        out["code"] = "SI_TKILL" if sc.nr in (wire.SYS_TKILL, wire.SYS_TGKILL) else "SI_USER"
        out["sender"] = self._proc(sc.sender, "sender")
        if sc.nr == wire.SYS_PIDFD_SEND_SIGNAL:
            target = {"pid": None, "tid": None, "ns_pid": None, "comm": None, "pidfd": sc.req_pid}
        else:
            tid = sc.req_tid or (sc.req_pid if sc.nr == wire.SYS_TKILL else None)
            target = {
                "pid": sc.req_pid if sc.nr != wire.SYS_TKILL else None,
                "tid": tid,
                "ns_pid": None,
                "comm": None,
            }
        out["target"] = target
        out["outcome"] = oc.outcome
        out["reason"] = oc.reason
        out["scope"] = scope_of_syscall(sc.nr, sc.req_pid, sc.sys_flags)
        fan = is_fanout_request(sc.nr, sc.req_pid, sc.sys_flags)
        out["fanout"] = {"id": sc.seq, "count": 0, "requested": sc.req_pid} if fan else None
        out["syscall"] = wire.SYSCALL_NAMES.get(sc.nr, str(sc.nr))
        out["result"] = None
        out["target_state"] = None
        out["si_pid"] = None
        if sc.derived:
            out["derived"] = list(sc.derived)
        return out

    def _deliver(self, d: wire.Deliver) -> Out:
        act = action_of(d.sig, d.handler, d.flags, d.group_exit_code)
        out = self._base("deliver", d.ts_ns)
        out["signal"] = signals.name(act.signo)
        out["signo"] = act.signo
        # get_signal()'s group-exit path traces with SEND_SIG_NOINFO: there is no code then.
        known = act.reported_as is None and d.info_kind != wire.INFO_NOINFO
        out["code"] = signals.code_name(act.signo, d.code) if known else None
        out["target"] = self._proc(d.task, "target")
        out["action"] = act.action
        out["reported_as"] = signals.name(act.reported_as) if act.reported_as else None
        if d.derived:
            out["derived"] = list(d.derived)
        return out

    def _exit(self, e: wire.Exit) -> Out:
        st = exit_status(e.exit_code)
        out = self._base("exit", e.ts_ns)
        out["process"] = self._proc(e.task, "process")
        out["exit_code"] = st.exit_code
        out["signal"] = signals.name(st.signo) if st.signo else None
        out["core_dumped"] = st.core_dumped
        out["oom"] = None if e.oom_unknown else bool(e.flags & wire.F_OOM_VICTIM)
        out["caught"] = None if e.caught is None else signals.names_of_mask(e.caught)
        if e.derived:
            out["derived"] = list(e.derived)
        return out

    def _oom(self, o: wire.Oom) -> Out:
        out = self._base("oom", o.ts_ns)
        out["victim"] = self._proc(o.victim, "target")
        out["trigger"] = self._proc(o.trigger, "sender")
        return out
