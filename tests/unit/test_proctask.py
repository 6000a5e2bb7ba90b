from __future__ import annotations

import json
from pathlib import Path

from sigtrace import wire
from sigtrace.backends.proctask import Identity, parse_status, si_pid_seen_by

DATA = Path(__file__).resolve().parents[1] / "data" / "tracefs"
STATUS = json.loads((DATA / "scenarios.status.json").read_text())
PIDS = json.loads((DATA / "scenarios.pids.json").read_text())


def _status(role: str):  # type: ignore[no-untyped-def]
    st = parse_status(STATUS[str(PIDS[role])]["status"])
    assert st is not None
    return st


def test_recorded_statuses() -> None:
    init = _status("init")
    assert (init.ns_pid, init.ns_depth, init.unkillable) == (1, 2, True)
    assert init.handler(15) == wire.HANDLER_DFL
    assert _status("handler").handler(15) == wire.HANDLER_FUNC
    assert _status("ignorer").handler(15) == wire.HANDLER_IGN
    blocker = _status("blocker")
    assert blocker.blocked(15) and not blocker.blocked(10)
    rec = _status("recorder")
    assert (rec.ns_depth, rec.unkillable, rec.dispositions_known) == (1, False, True)


def test_zombie_dispositions_are_unknown_and_garbage_is_none() -> None:
    text = STATUS[str(PIDS["handler"])]["status"].replace("State:\tS", "State:\tZ")
    st = parse_status(text)
    assert st is not None and not st.dispositions_known
    assert parse_status("Name:\tx\n") is None


def _ident(ns_pid: int, inum: int, depth: int) -> Identity:
    return Identity(wire.Task(0, 0, 100, 100, ns_pid, ns_pid, inum, 0, "x"), depth, 0)


def test_si_pid_as_the_kernel_stores_it() -> None:
    host, host2 = _ident(500, 1, 1), _ident(600, 1, 1)
    init, inside = _ident(1, 2, 2), _ident(7, 2, 2)
    other_ns, nested = _ident(3, 3, 2), _ident(4, 9, 3)
    assert si_pid_seen_by(host, host2) == 500
    assert si_pid_seen_by(inside, init) == 7  # same namespace
    assert si_pid_seen_by(host, init) == 0  # from an ancestor namespace
    assert si_pid_seen_by(inside, host) == 7  # its own namespace's number, not translated
    assert si_pid_seen_by(other_ns, init) == 0  # a sibling namespace
    assert si_pid_seen_by(nested, init) is None  # deeper: maybe a child namespace, maybe not
