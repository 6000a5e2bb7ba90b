"""Parsed trace_pipe lines and process-events exits → wire records, for the tracefs backend.

What bpf/sigtrace.bpf.c does in the kernel, done here from text: number each kill-family call
per thread and count what it generated (one fan-out, or a failure that generated nothing),
filter by pid and cgroup, remember which processes took part so that their exits are
reported, and give a group exit's SIGKILL delivery its real signal. The target's side of a
signal (tgid, namespace pid, handler, blocked, unkillable) comes from /proc when the line is
handled (`TaskFacts`), so those fields are listed in `derived`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sigtrace import signals, wire
from sigtrace.backends import kernel_rules as kr
from sigtrace.backends.assisted_records import AssistedRecords, Delivered, Sent
from sigtrace.backends.group_exits import bounded_set
from sigtrace.backends.procevents import ProcExit
from sigtrace.backends.proctask import Identity, TaskFacts, unknown_task
from sigtrace.backends.tracefs_parse import signed32
from sigtrace.backends.userfilter import Filters, call_is_news
from sigtrace.classify import is_fanout_request

# The kill-family calls (wire.SYSCALL_NAMES) → their argument names for req_pid, req_tid,
# flags and the siginfo pointer, as the syscall tracepoints print them.
_ARGS: dict[int, tuple[str, str | None, str | None, str | None]] = {
    wire.SYS_KILL: ("pid", None, None, None),
    wire.SYS_TKILL: ("pid", "pid", None, None),
    wire.SYS_TGKILL: ("tgid", "pid", None, None),
    wire.SYS_PIDFD_SEND_SIGNAL: ("pidfd", None, "flags", "info"),
    wire.SYS_RT_SIGQUEUEINFO: ("pid", None, None, "uinfo"),
    wire.SYS_RT_TGSIGQUEUEINFO: ("tgid", "pid", None, "uinfo"),
}
SYSCALLS = {wire.SYSCALL_NAMES[nr]: (nr, *args) for nr, args in _ARGS.items()}


@dataclass
class Call:
    seq: int
    nr: int
    sig: int
    req_pid: int
    req_tid: int
    sys_flags: int
    user_siginfo: bool
    count: int = 0  # signals it generated (that passed the kernel's signal filter)
    emitted: int = 0  # ... and that passed the pid/cgroup filters


_NO_CALL = Call(seq=0, nr=0, sig=0, req_pid=0, req_tid=0, sys_flags=0, user_siginfo=False)

# A record's current task: the one whose context its line was traced in.
_CURRENT: dict[type, str] = {
    wire.Generate: "sender",
    wire.Syscall: "sender",
    wire.Deliver: "task",
    wire.Oom: "trigger",
}
SavedNames = Callable[[set[int]], dict[int, tuple[str | None, int]]]


class TraceLineTranslator(AssistedRecords):
    """Parsed trace_pipe lines in, events for AssistedRecords, wire records out."""

    def __init__(
        self,
        facts: TaskFacts,
        wanted: frozenset[int],
        filters: Filters,
        saved_names: SavedNames = lambda tids: {},
    ) -> None:
        super().__init__(facts, wanted, filters)
        self.saved_names = saved_names  # ftrace's pid → comm/tgid caches, read again now
        self.seq = 0
        self.inflight: dict[int, Call] = {}
        # tid whose thread group died → (its comm, when): sched_process_exit, which comes
        # before the exit code's message (and, for an init, before its namespace teardown)
        self.exiting: dict[int, tuple[str, int]] = {}
        self.tracked: dict[int, bool] = {}  # tgids that took part: their exits are reported
        self.oom_victims: dict[int, bool] = {}
        self.tgid_of: dict[int, int] = {}  # tid → tgid, from the lines' record-tgid column
        self.exit_comm: dict[int, str] = {}  # tid → its comm when its group died (the event's)
        self._unsure: set[int] = set()  # tids named by ftrace's caches alone in this batch

    # --- lines ----------------------------------------------------------------------------

    def line(self, p: dict[str, Any]) -> list[wire.Record]:
        event = p.get("event")
        if p.get("common_tgid") is not None:
            bounded_set(self.tgid_of, p["common_pid"], p["common_tgid"])
        if event == "signal_generate":
            return self._generate(p)
        if event == "signal_deliver":
            return self._deliver(p)
        if event == "sys_enter":
            self._enter(p)
        elif event == "sys_exit":
            return self._exit_call(p)
        elif event == "sched_process_exit":
            if p.get("group_dead") is not False:
                bounded_set(self.exiting, p["pid"], (p["comm"], p["ts_ns"]))
                bounded_set(self.exit_comm, p["pid"], p["comm"])
                if self.tracked.get(self.tgid_of.get(p["pid"], p["pid"])):
                    self.facts.status(p["pid"])  # its handlers, if not a zombie yet
        elif event == "mark_victim":
            return self._oom(p)
        return []

    def _task(
        self, tid: int, tgid: int | None, comm: str | None, cached: bool = True
    ) -> tuple[wire.Task, tuple[str, ...], Identity | None]:
        """(task, its fields read from /proc, /proc's identity). A line's task comm and tgid
        come from ftrace's caches (`cached`), written when a task is switched out after an
        event: a line read before that names whatever task had this pid earlier. So /proc
        decides for a task it has; for one gone, confirm() names it at the end of the batch."""
        if tid == 0:
            return unknown_task(None, 0, comm), (), None  # the idle task: ftrace names it
        ident = self.facts.identity(tid)
        if ident is None:
            if cached:
                self._unsure.add(tid)
            return unknown_task(tgid, tid, comm), (), None
        task, read = ident.task, ["ns_pid", "uid"]
        if tgid != task.pid:
            read.append("pid")
        if not cached and comm is not None:
            task = task._replace(comm=comm)  # an event's own field
        elif comm != task.comm:
            read.append("comm")
        return task, tuple(read), ident

    def _generate(self, p: dict[str, Any]) -> list[wire.Record]:
        sig, code = p["sig"], p["code"]
        if sig not in self.wanted:
            return []
        stid, ttid = p["common_pid"], p["pid"]
        call = self.inflight.get(stid)
        if call is not None and call.sig == sig:
            call.count += 1
        else:
            call = None
        sender, sender_read, sident = self._task(stid, p["common_tgid"], p["common_comm"])
        st = self.facts.status(ttid)
        tident = self.facts.identity(ttid)
        if tident is not None:
            target = tident.task._replace(comm=p["comm"])
        else:
            target = unknown_task(None, ttid, p["comm"])
        c = call or _NO_CALL
        fanout = call is not None and is_fanout_request(c.nr, c.req_pid, c.sys_flags)
        rec = self.signal(
            Sent(
                ts_ns=p["ts_ns"],
                cpu=p["cpu"],
                sig=sig,
                code=code,
                si_errno=p["errno"],
                group=p["group"],
                result=p["result"],
                flags=(wire.F_SYSCALL if call else 0) | (wire.F_FANOUT if fanout else 0),
                seq=c.seq,
                sys_nr=c.nr,
                req_pid=c.req_pid,
                sys_flags=c.sys_flags,
                user_siginfo=c.user_siginfo,
                teardown=stid in self.exiting and sig == signals.SIGKILL and code == kr.SI_KERNEL,
                sender=sender,
                sender_read=sender_read,
                sender_ident=sident,
                target_tid=ttid,
                target=target,
                target_ident=tident,
                target_status=st,
                # /proc read now, not when sent: a caught signal read blocked may be in its
                # handler; this backend cannot tell (no batch of deliveries ahead).
                delivered_since=False,
            )
        )
        if rec is None:
            return []
        if call is not None:
            call.emitted += 1
        bounded_set(self.tracked, target.pid if target.pid is not None else ttid, True)
        return [rec]

    def _deliver(self, p: dict[str, Any]) -> list[wire.Record]:
        tid = p["common_pid"]
        task, read, _ = self._task(tid, p["common_tgid"], p["common_comm"])
        e = Delivered(p["ts_ns"], p["cpu"], p["sig"], p["code"], p["sa_handler"], task, read)
        rec = self.delivery(e)
        if rec is None:
            return []
        bounded_set(self.tracked, task.pid if task.pid is not None else tid, True)
        return [rec]

    def _enter(self, p: dict[str, Any]) -> None:
        spec = SYSCALLS.get(p["syscall"])
        args = p["args"]
        if spec is None or "sig" not in args:
            return
        nr, pid_arg, tid_arg, flags_arg, info_arg = spec
        sig = signed32(args["sig"])
        if sig not in self.wanted:
            return
        self.seq += 1
        call = Call(
            seq=self.seq,
            nr=nr,
            sig=sig,
            req_pid=signed32(args.get(pid_arg, 0)),
            req_tid=signed32(args.get(tid_arg, 0)) if tid_arg else 0,
            sys_flags=args.get(flags_arg, 0) & 0xFFFFFFFF if flags_arg else 0,
            user_siginfo=bool(args.get(info_arg, 0)) if info_arg else False,
        )
        self.inflight.pop(p["common_pid"], None)
        bounded_set(self.inflight, p["common_pid"], call)

    def _exit_call(self, p: dict[str, Any]) -> list[wire.Record]:
        call = self.inflight.pop(p["common_pid"], None)
        if call is None:
            return []
        ret = p["ret"]
        fan = is_fanout_request(call.nr, call.req_pid, call.sys_flags)
        news = call_is_news(call.emitted, fan, call.count, ret)
        if news is False:
            return []
        sender, read, _ = self._task(p["common_pid"], p["common_tgid"], p["common_comm"])
        rec = self.syscall(
            wire.Syscall(
                p["ts_ns"], p["cpu"], call.seq, ret, call.nr, call.sig, call.req_pid,
                call.req_tid, call.count, call.sys_flags, sender,
            ),
            read,
            news,
        )  # fmt: skip
        return [rec] if rec is not None else []

    def _oom(self, p: dict[str, Any]) -> list[wire.Record]:
        victim, _, _ = self._task(p["pid"], None, p["comm"], cached=False)
        if self.filters.any and not self.filters.matches(victim):
            return []
        trigger, _, _ = self._task(p["common_pid"], p["common_tgid"], p["common_comm"])
        key = victim.pid if victim.pid is not None else p["pid"]
        bounded_set(self.oom_victims, key, True)
        bounded_set(self.tracked, key, True)
        return [wire.Oom(p["ts_ns"], p["cpu"], victim, trigger)]

    def patch_tgids(self, records: list[wire.Record]) -> list[wire.Record]:
        """A target gone before /proc was read has no tgid; a later line of this batch, in
        its own context (its delivery, its exit), gives the kernel's one."""
        out: list[wire.Record] = []
        for rec in records:
            if isinstance(rec, wire.Generate) and rec.target.pid is None:
                tgid = self.tgid_of.get(rec.target.tid) if rec.target.tid is not None else None
                if tgid is not None:
                    rec = rec._replace(target=rec.target._replace(pid=tgid))
            out.append(rec)
        return out

    def confirm(self, records: list[wire.Record]) -> list[wire.Record]:
        """Name the tasks that were gone from /proc when their line was handled (after this
        batch's lines). Gone, each has been switched out for the last time, so its own exit
        line (a group's last thread: the event's comm) or ftrace's caches read now name it,
        not an earlier task with its pid; else its comm and tgid are unknown, not guessed."""
        unsure, self._unsure = self._unsure, set()
        if not unsure:
            return records
        saved: dict[int, tuple[str | None, int]] | None = None
        out: list[wire.Record] = []
        for rec in records:
            role = _CURRENT.get(type(rec))
            task = getattr(rec, role) if role else None
            if role is None or task is None or task.tid not in unsure or task.ns_pid is not None:
                out.append(rec)
                continue
            exit_comm = self.exit_comm.get(task.tid)
            if exit_comm is not None and task.pid == task.tid:
                named = task._replace(comm=exit_comm)
            else:
                if saved is None:
                    saved = self.saved_names(unsure)
                comm, tgid = saved.get(task.tid, (None, None))
                named = task._replace(comm=exit_comm or comm, pid=tgid)
            out.append(rec._replace(**{role: named}))
        return out

    # --- exits ----------------------------------------------------------------------------

    def proc_exit(self, e: ProcExit) -> list[wire.Record]:
        """A task's exit from the process-events connector: a record when its thread group
        died with it (sched_process_exit said group_dead) and the process took part."""
        died = self.exiting.pop(e.tid, None)
        if died is None:
            if e.tid != e.tgid:
                self.facts.forget(e.tid)
            return []
        comm, ts_ns = died
        ident = self.facts.identity(e.tid) or self.facts.identity(e.tgid)
        if ident is not None:
            task = ident.task._replace(pid=e.tgid, tid=e.tid, comm=comm)
        else:
            task = unknown_task(e.tgid, e.tid, comm)
        tracked = self.tracked.pop(e.tgid, False)
        oom = self.oom_victims.pop(e.tgid, False)
        return self.exit(ts_ns, e.cpu, e, task, oom=oom, took_part=tracked)
