"""Wire records for the /proc-assisted backends (bcc, tracefs): one builder, fed by one event
shape per tracepoint, whichever backend saw it.

Each backend turns what its kernel side gave (bcc_program.c's records, trace_pipe lines)
into these events, with /proc read for what the tracepoints lack (`TaskFacts`); the rules
that make records of them live here once: the target's state when sent, a kill()'s si_pid,
the group exit a SIGKILL delivery stands for, the filters, and what is listed in `derived`.
Pure but for `facts`: no I/O of its own.
"""

from __future__ import annotations

from typing import NamedTuple

from sigtrace import signals, wire
from sigtrace.backends import kernel_rules as kr
from sigtrace.backends.group_exits import GroupExits
from sigtrace.backends.procevents import ProcExit
from sigtrace.backends.proctask import Identity, TaskFacts, exit_record, si_pid_seen_by
from sigtrace.backends.proctask import target_state_when_sent as when_sent
from sigtrace.backends.userfilter import Filters
from sigtrace.classify import RESULT_DELIVERED, RESULT_LOSE_INFO
from sigtrace.procfs import Status

# Calls whose siginfo the kernel fills itself (prepare_kill_siginfo): their si_pid is known.
KERNEL_SIGINFO = (wire.SYS_KILL, wire.SYS_TKILL, wire.SYS_TGKILL, wire.SYS_PIDFD_SEND_SIGNAL)


class Sent(NamedTuple):
    """A signal_generate, with its tasks as /proc told them when it was handled."""

    ts_ns: int
    cpu: int
    sig: int
    code: int
    si_errno: int
    group: int
    result: int
    flags: int  # wire.F_SYSCALL and F_FANOUT when a kill-family call sent it
    seq: int  # the call's (0: none)
    sys_nr: int
    req_pid: int
    sys_flags: int
    user_siginfo: bool  # the call passed its own siginfo (its si_pid is the caller's word)
    teardown: bool  # sent by an exiting task as SI_KERNEL SIGKILL (zap_pid_ns_processes?)
    sender: wire.Task
    sender_read: tuple[str, ...]  # the sender's fields that came from /proc
    sender_ident: Identity | None
    target_tid: int
    target: wire.Task
    target_ident: Identity | None  # None: gone from /proc
    target_status: Status | None
    delivered_since: bool  # its delivery came before /proc was read


class Delivered(NamedTuple):
    """A signal_deliver, in its task's context."""

    ts_ns: int
    cpu: int
    sig: int
    code: int
    sa_handler: int
    task: wire.Task
    read: tuple[str, ...]  # the task's fields that came from /proc (empty: gone)


class AssistedRecords:
    """Events in, wire records out; None where the filters or the signal set drop one."""

    def __init__(self, facts: TaskFacts, wanted: frozenset[int], filters: Filters) -> None:
        self.facts = facts
        self.wanted = wanted
        self.filters = filters
        self.group_exit = GroupExits()  # tgid → the signal that ends it

    def signal(self, e: Sent) -> wire.Generate | None:
        target, f = e.target, self.filters
        if f.any and not (f.matches(e.sender) or f.matches(target)):
            return None
        derived = [f"sender.{f}" for f in e.sender_read]
        unknown = ["target_state.waiting"]  # sigtimedwait: no tracepoint field or /proc file
        # Dequeued before /proc was read: the mask read is the handler's (it blocks its own
        # signal while it runs), not the one it met when sent.
        sent = when_sent(e.target_status, e.sig, e.delivered_since)
        flags = e.flags | sent.flags
        if e.target_ident is not None:
            derived += ["target.pid", "target.ns_pid", "target.uid", "target_state.unkillable"]
            if target.ns_pid == 1:
                flags |= wire.F_UNKILLABLE  # copy_process() makes every pid ns init unkillable
        else:
            unknown.append("target_state.unkillable")  # gone from /proc: no namespace pid
        derived += sent.derived
        unknown += sent.unknown
        if e.teardown and e.sender.ns_pid == 1:
            flags |= wire.F_TEARDOWN  # zap_pid_ns_processes(): the exiting init kills the rest
            derived.append("scope")  # the sender's namespace pid came from /proc
        si_pid, info_kind = self._si_pid(e)
        if si_pid is not None:
            derived.append("si_pid")
        if e.result in (RESULT_DELIVERED, RESULT_LOSE_INFO):
            key = target.pid if target.pid is not None else e.target_tid
            ptraced = bool(flags & wire.F_PTRACED)
            self.group_exit.note(key, e.sig, sent.handler, sent.blocked, ptraced)
        return wire.Generate(
            ts_ns=e.ts_ns,
            cpu=e.cpu,
            syscall_seq=e.seq,
            sys_nr=e.sys_nr,
            req_pid=e.req_pid,
            sys_flags=e.sys_flags,
            sig=e.sig,
            code=e.code,
            si_errno=e.si_errno,
            si_pid=si_pid if si_pid is not None else 0,
            si_uid=0,  # not in the tracepoint
            info_kind=info_kind,
            group=e.group,
            result=e.result,
            handler=sent.handler,
            flags=flags,
            sender=e.sender,
            target=target,
            derived=tuple(derived),
            unknown=tuple(unknown),
            caught=sent.caught,
        )

    @staticmethod
    def _si_pid(e: Sent) -> tuple[int | None, int]:
        """kill()'s si_pid from both tasks' namespaces; None where it can't be told."""
        by_kernel = e.flags & wire.F_SYSCALL and e.sys_nr in KERNEL_SIGINFO and not e.user_siginfo
        if not by_kernel:
            return None, wire.INFO_PRIV if e.code == kr.SI_KERNEL else wire.INFO_NOINFO
        if e.sender_ident is None or e.target_ident is None:
            return None, wire.INFO_NOINFO
        si_pid = si_pid_seen_by(e.sender_ident, e.target_ident)
        return si_pid, wire.INFO_PTR if si_pid is not None else wire.INFO_NOINFO

    def delivery(self, e: Delivered) -> wire.Deliver | None:
        task, sig = e.task, e.sig
        key = task.pid if task.pid is not None else task.tid
        flags = gcode = 0
        info_kind = wire.INFO_PTR
        derived = [f"target.{f}" for f in e.read]
        h = e.sa_handler
        handler = wire.HANDLER_DFL if h == 0 else wire.HANDLER_IGN if h == 1 else wire.HANDLER_FUNC
        ge = self.group_exit.get(key) if key is not None else None
        if sig == signals.SIGKILL and e.code == kr.SI_USER:
            # get_signal() reports a group exit as SIGKILL without siginfo; the signal behind
            # it is the one complete_signal() turned into that group exit.
            if ge is None:
                return None  # exec() or exit_group() ending the other threads: nothing was sent
            flags |= wire.F_GROUP_EXIT
            gcode = ge.sig
            info_kind = wire.INFO_NOINFO
            if ge.sig != signals.SIGKILL:
                derived.append("signal")
        elif ge is not None and key is not None and ge.sig == sig and not ge.certain:
            del self.group_exit[key]  # it was dequeued after all: it had a handler
        if sig not in self.wanted and gcode not in self.wanted:
            return None
        if self.filters.any and not self.filters.matches(task):
            return None
        if e.read:
            if task.ns_pid == 1:
                flags |= wire.F_UNKILLABLE
            # Only SIG_DFL's action hangs on /proc (an init drops it: its ns pid says so);
            # a handler's or SIG_IGN's is the kernel's sa_handler, a group exit's SIGKILL.
            if handler == wire.HANDLER_DFL and not flags & wire.F_GROUP_EXIT:
                derived.append("action")
        return wire.Deliver(
            ts_ns=e.ts_ns,
            cpu=e.cpu,
            sig=sig,
            code=e.code,
            si_pid=0,
            info_kind=info_kind,
            handler=handler,
            group_exit_code=gcode,
            flags=flags,
            task=task,
            derived=tuple(derived),
        )

    def syscall(
        self, call: wire.Syscall, sender_read: tuple[str, ...], news: bool | None
    ) -> wire.Syscall | None:
        """A finished kill-family call's record; `news` as userfilter.call_is_news said
        (False: none, None: only if its sender or the pid it named is traced)."""
        if news is False or (
            news is None and not self.filters.call_traced(call.sender, call.req_pid)
        ):
            return None
        # A failed call's record shows the sender too: say what came from /proc.
        return call._replace(derived=tuple(f"sender.{f}" for f in sender_read))

    def exit(
        self, ts_ns: int, cpu: int, e: ProcExit, task: wire.Task, *, oom: bool, took_part: bool
    ) -> list[wire.Record]:
        """A dead thread group's record, its wait status `e` from the process-events
        connector: when it `took_part` in a reported signal, or passes the filters itself.
        The facts forget it, its handler mask (`caught`) read first."""
        caught = self.facts.caught(e.tgid)
        self.facts.forget(e.tid)
        self.facts.forget(e.tgid)
        if task.pid is not None:
            self.group_exit.pop(task.pid, None)  # a pid that comes back starts afresh
        if not took_part and not (self.filters.any and self.filters.matches(task)):
            return []
        return [exit_record(ts_ns, cpu, e.exit_code, task, caught, oom)]
