"""What the kernel did with a signal, from the facts the kernel side recorded. Pure.

The rules follow kernel/signal.c: sig_task_ignored() and prepare_signal() decide at
generation (the tracepoint's `result`), get_signal() decides at delivery.
"""

from __future__ import annotations

import errno as _errno
from typing import NamedTuple

from sigtrace import signals, wire

# include/trace/events/signal.h, enum trace_signal_deliver
RESULT_DELIVERED = 0
RESULT_IGNORED = 1
RESULT_ALREADY_PENDING = 2
RESULT_OVERFLOW_FAIL = 3
RESULT_LOSE_INFO = 4
RESULT_NAMES = {
    RESULT_DELIVERED: "delivered",
    RESULT_IGNORED: "ignored",
    RESULT_ALREADY_PENDING: "already_pending",
    RESULT_OVERFLOW_FAIL: "overflow_fail",
    RESULT_LOSE_INFO: "lose_info",
}
HANDLER_NAMES = {
    wire.HANDLER_DFL: "default",
    wire.HANDLER_IGN: "ignore",
    wire.HANDLER_FUNC: "handler",
}


class Outcome(NamedTuple):
    outcome: str  # delivered | ignored | pending | merged | failed
    reason: str | None


def outcome_of(sig: int, result: int, handler: int | None, flags: int) -> Outcome:
    """The kernel's verdict at generation, and why."""
    if result == RESULT_DELIVERED:
        if flags & wire.F_BLOCKED:
            return Outcome("pending", "blocked")
        return Outcome("delivered", None)
    if result == RESULT_IGNORED:
        if handler == wire.HANDLER_IGN:
            return Outcome("ignored", "sig_ign")
        if sig in signals.KERNEL_IGNORE:
            return Outcome("ignored", "default_ignore")
        if flags & wire.F_UNKILLABLE:
            return Outcome("ignored", "pid1_no_handler")
        return Outcome("ignored", "kernel_thread")  # the remaining case of sig_task_ignored()
    if result == RESULT_ALREADY_PENDING:
        return Outcome("merged", "already_pending")
    if result == RESULT_OVERFLOW_FAIL:
        return Outcome("failed", "EAGAIN")  # real-time queue full: the sender got -EAGAIN
    if result == RESULT_LOSE_INFO:
        return Outcome("delivered", "info_lost")
    return Outcome("delivered", f"result_{result}")


def failed_outcome(ret: int) -> Outcome:
    """A kill-family syscall that returned -errno and generated nothing."""
    return Outcome("failed", _errno.errorcode.get(-ret, f"E{-ret}"))


def scope_of_syscall(nr: int, req_pid: int, sys_flags: int = 0) -> str:
    if nr == wire.SYS_KILL:
        if req_pid > 0:
            return "process"
        if req_pid == -1:
            return "all"
        return "pgrp"
    if nr in (wire.SYS_TKILL, wire.SYS_TGKILL, wire.SYS_RT_TGSIGQUEUEINFO):
        return "thread"
    if nr == wire.SYS_PIDFD_SEND_SIGNAL:
        if sys_flags & 0x4:  # PIDFD_SIGNAL_PROCESS_GROUP
            return "pgrp"
        if sys_flags & 0x1:  # PIDFD_SIGNAL_THREAD
            return "thread"
    return "process"


def is_fanout_request(nr: int, req_pid: int, sys_flags: int = 0) -> bool:
    """One request that names many processes (a process group, or every process)."""
    return scope_of_syscall(nr, req_pid, sys_flags) in ("pgrp", "all")


def scope_of_generate(flags: int, group: int) -> str:
    """Scope of a signal not sent by a traced syscall (or whose syscall record was lost)."""
    if flags & wire.F_TEARDOWN:
        return "pidns_teardown"
    if flags & wire.F_SYSCALL:
        return "process" if group else "thread"
    return "kernel"


class Action(NamedTuple):
    signo: int  # the real signal (a group exit reports SIGKILL)
    action: str
    reported_as: int | None  # the tracepoint's sig, when it differs


def action_of(sig: int, handler: int | None, flags: int, group_exit_code: int) -> Action:
    """What get_signal() does with a signal it dequeued."""
    if sig == signals.SIGKILL and flags & wire.F_GROUP_EXIT:
        real = group_exit_code & 0x7F
        if real and real != signals.SIGKILL:
            core = bool(group_exit_code & 0x80) or real in signals.KERNEL_COREDUMP
            return Action(real, "default_core" if core else "default_terminate", sig)
    if handler == wire.HANDLER_FUNC:
        return Action(sig, "handler", None)
    if handler == wire.HANDLER_IGN:
        return Action(sig, "ignore", None)
    if sig in signals.KERNEL_IGNORE:
        return Action(sig, "default_ignore", None)
    if flags & wire.F_UNKILLABLE and sig not in signals.KERNEL_ONLY:
        return Action(sig, "dropped_by_pid1", None)
    kind = signals.default_action(sig)
    return Action(
        sig, {"stop": "default_stop", "core": "default_core"}.get(kind, "default_terminate"), None
    )


class ExitStatus(NamedTuple):
    exit_code: int  # shell style: 128 + n after a signal
    signo: int | None
    core_dumped: bool


def exit_status(wait_status: int) -> ExitStatus:
    sig = wait_status & 0x7F
    if sig:
        return ExitStatus(128 + sig, sig, bool(wait_status & 0x80))
    return ExitStatus((wait_status >> 8) & 0xFF, None, False)
