"""ptrace(2) requests python-ptrace lacks, and what a waitpid() status of a tracee means. The
status decoding is pure (tested without tracees).

With PTRACE_SEIZE (no SIGSTOP at attach) a tracee stops for: a signal about to be delivered
(signal-delivery-stop: report it, then re-inject it), a ptrace event (fork/clone/exec), or
PTRACE_EVENT_STOP: a group-stop (SIGSTOP & co: leave it stopped with PTRACE_LISTEN, so that
SIGCONT still resumes it) or a new child's first stop and PTRACE_INTERRUPT (resume it).
"""

from __future__ import annotations

import os
import signal
from typing import NamedTuple, cast

PTRACE_CONT = 7
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208

PTRACE_O_TRACEFORK = 0x02
PTRACE_O_TRACEVFORK = 0x04
PTRACE_O_TRACECLONE = 0x08
PTRACE_O_TRACEEXEC = 0x10
# Follow every child; no PTRACE_O_EXITKILL: if sigtrace dies, its tracees must live on.
OPTIONS = PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC

PTRACE_EVENT_FORK = 1
PTRACE_EVENT_VFORK = 2
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_STOP = 128
NEW_CHILD_EVENTS = (PTRACE_EVENT_FORK, PTRACE_EVENT_VFORK, PTRACE_EVENT_CLONE)
WALL = 0x40000000  # wait for every tracee, thread or process
GROUP_STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})


class Stop(NamedTuple):
    kind: str  # "exit" | "signal" | "group_stop" | "event_stop" | "event" | "other"
    sig: int  # the signal (exit: the wait status itself)
    event: int


def decode_status(status: int) -> Stop:
    """A tracee's waitpid() status → what kind of stop (or end) it is. Pure."""
    if os.WIFEXITED(status) or os.WIFSIGNALED(status):
        return Stop("exit", status & 0xFFFF, 0)
    if not os.WIFSTOPPED(status):
        return Stop("other", 0, 0)
    sig = os.WSTOPSIG(status)
    event = (status >> 16) & 0xFF
    if event == PTRACE_EVENT_STOP:
        return Stop("group_stop" if sig in GROUP_STOP_SIGNALS else "event_stop", sig, event)
    if event:
        return Stop("event", sig, event)
    if sig == (signal.SIGTRAP | 0x80):
        return Stop("other", sig, 0)  # a syscall-stop: never asked for
    return Stop("signal", sig, 0)


class SigInfo(NamedTuple):
    signo: int
    code: int
    pid: int  # si_pid: 0 when the sender is outside the tracee's pid namespace
    uid: int


def _call(request: int, tid: int, addr: int = 0, data: int = 0) -> int:
    from ptrace.binding.func import ptrace

    return cast(int, ptrace(request, tid, addr, data))  # python-ptrace has no types


def seize(tid: int) -> None:
    _call(PTRACE_SEIZE, tid, 0, OPTIONS)


def cont(tid: int, sig: int = 0) -> None:
    _call(PTRACE_CONT, tid, 0, sig)


def listen(tid: int) -> None:
    _call(PTRACE_LISTEN, tid)


def interrupt(tid: int) -> None:
    _call(PTRACE_INTERRUPT, tid)


def detach(tid: int, sig: int = 0) -> None:
    _call(PTRACE_DETACH, tid, 0, sig)


def event_msg(tid: int) -> int:
    from ptrace.binding.func import ptrace_geteventmsg

    return int(ptrace_geteventmsg(tid))


def siginfo(tid: int) -> SigInfo:
    from ptrace.binding.func import ptrace_getsiginfo

    info = ptrace_getsiginfo(tid)
    # python-ptrace declares only the SIGCHLD member of the union; its pid and uid sit where
    # the kill member's si_pid and si_uid are (the first two fields of every member).
    return SigInfo(info.si_signo, info.si_code, info._sigchld.pid, info._sigchld.uid)
