"""ptrace: waitpid statuses and the records a signal-delivery-stop becomes. Pure parts."""

from __future__ import annotations

import signal

from sigtrace import wire
from sigtrace.backends import ptrace_stops as pt
from sigtrace.backends.ptrace_records import delivery_records
from sigtrace.correlate import Correlator
from sigtrace.procfs import parse_status


def test_decode_status() -> None:
    assert pt.decode_status(15) == ("exit", 15, 0)  # killed by SIGTERM
    assert pt.decode_status(3 << 8) == ("exit", 3 << 8, 0)
    stopped = 0x7F | (signal.SIGUSR1 << 8)
    assert pt.decode_status(stopped) == ("signal", signal.SIGUSR1, 0)
    group = 0x7F | (signal.SIGSTOP << 8) | (pt.PTRACE_EVENT_STOP << 16)
    assert pt.decode_status(group).kind == "group_stop"
    first = 0x7F | (signal.SIGTRAP << 8) | (pt.PTRACE_EVENT_STOP << 16)
    assert pt.decode_status(first).kind == "event_stop"
    fork = 0x7F | (signal.SIGTRAP << 8) | (pt.PTRACE_EVENT_FORK << 16)
    assert pt.decode_status(fork) == ("event", signal.SIGTRAP, pt.PTRACE_EVENT_FORK)


STATUS = "Name:\t{n}\nState:\tt (tracing stop)\nTgid:\t{p}\nPid:\t{p}\nTracerPid:\t9\n"
STATUS += (
    "Uid:\t0\t0\t0\t0\nNStgid:\t{ns}\nNSpid:\t{ns}\nSigBlk:\t0\nSigIgn:\t{ign}\nSigCgt:\t{cgt}\n"
)


def _run(ns: str, ign: str, cgt: str, sig: int, code: int, si_pid: int) -> list[dict]:
    st = parse_status(STATUS.format(n="app", p=50, ns=ns, ign=ign, cgt=cgt))
    assert st is not None
    target = wire.Task(0, 0, 50, 50, int(ns.split()[-1]), 0, 7, 0, "app")
    sender = wire.Task(0, 0, 40, 40, 40, 40, 1, 0, "kill")
    info = pt.SigInfo(sig, code, si_pid, 0)
    recs = delivery_records(1000, info, target, st, lambda p: sender if p == 40 else None)
    corr = Correlator(str)
    return [o for r in recs for o in corr.feed(r)] + corr.flush(None)


def test_traced_init_sigterm_from_the_host_is_classified_as_untraced() -> None:
    (gen,) = _run("50\t1", "0", "0", 15, 0, 0)  # no deliver: the kernel would have dropped it
    assert (gen["outcome"], gen["reason"], gen["result"]) == (
        "ignored",
        "pid1_no_handler",
        "ignored",
    )
    assert {"result", "outcome"} <= set(gen["derived"])
    assert gen["si_pid"] == 0 and gen["sender"]["pid"] is None
    # an unknown sender is all null: no empty comm passed off as its name
    assert set(gen["sender"].values()) == {None}
    assert gen["target_state"]["ptraced"] is True


def test_handled_and_ignored_signals() -> None:
    gen, dlv = _run("50", "0", "4000", 15, 0, 40)  # SigCgt bit 14: SIGTERM
    assert (gen["outcome"], gen["sender"]["pid"], gen["syscall"]) == ("delivered", 40, None)
    assert dlv["action"] == "handler" and "action" in dlv["derived"]
    (ign,) = _run("50", "4000", "0", 15, 0, 40)
    assert (ign["outcome"], ign["reason"]) == ("ignored", "sig_ign")
    gen, dlv = _run("50", "0", "0", 15, -6, 40)  # SI_TKILL
    assert (gen["scope"], dlv["action"]) == ("thread", "default_terminate")
    assert dlv["reported_as"] is None  # traced: no group exit at generation
