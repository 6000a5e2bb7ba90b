from __future__ import annotations

import json
import re
from pathlib import Path

from sigtrace import wire
from sigtrace.backends.proctask import (
    Identity,
    SentState,
    TaskFacts,
    si_pid_seen_by,
    target_state_when_sent,
)
from sigtrace.procfs import Procfs, parse_status

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


def test_a_task_being_released_has_no_ids() -> None:
    # /proc/<pid>/status read while its parent reaps it: State X, and every pid but Pid is 0
    text = STATUS[str(PIDS["handler"])]["status"]
    dead = re.sub(r"(?m)^(Tgid|NStgid|NSpid|PPid):.*$", r"\1:\t0", text)
    dead = re.sub(r"(?m)^State:.*$", "State:\tX (dead)", dead)
    assert "Tgid:\t0\n" in dead and parse_status(text) is not None
    assert parse_status(dead) is None  # no pid at all: unknown, not pid 0


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


def _masks(status: str, blk: int, pnd: int, shd: int = 0) -> str:
    for key, value in (("SigBlk", blk), ("SigPnd", pnd), ("ShdPnd", shd)):
        status = re.sub(rf"(?m)^{key}:.*$", f"{key}:\t{value:016x}", status)
    return status


def test_a_caught_signal_read_blocked_but_no_longer_pending_met_an_unknown_mask() -> None:
    term = 1 << 14
    handler = STATUS[str(PIDS["handler"])]["status"]  # SIGTERM caught
    blocker = STATUS[str(PIDS["blocker"])]["status"]  # SIGTERM blocked, SIG_DFL

    def sent(text: str, delivered_since: bool = False) -> SentState:
        st = parse_status(text)
        assert st is not None
        return target_state_when_sent(st, 15, delivered_since)

    # Read in its own handler (the kernel blocks it there): delivered, the mask it met unknown
    in_handler = sent(_masks(handler, term, 0))
    assert (in_handler.blocked, in_handler.flags & wire.F_BLOCKED) == (None, 0)
    assert in_handler.unknown == ["target_state.blocked"]
    assert in_handler.derived == ["target_state.handler", "target_state.ptraced"]
    # Still pending (for the thread or the process): it was blocked when sent
    assert sent(_masks(handler, term, term)).blocked is True
    assert sent(_masks(handler, term, 0, shd=term)).blocked is True
    # Blocked and not caught (sigtimedwait takes it, as tini does): blocked
    assert sent(_masks(blocker, term, 0)).flags & wire.F_BLOCKED
    assert sent(_masks(handler, 0, 0)).blocked is False
    # Its delivery seen after it was sent: not blocked then, whatever /proc says now
    assert sent(_masks(handler, term, 0), delivered_since=True).blocked is False
    assert sent(_masks(blocker, term, term), delivered_since=True).blocked is False
    gone = target_state_when_sent(None, 15, False)
    assert (gone.handler, gone.blocked, gone.derived) == (None, None, [])


class _Procfs(Procfs):
    def __init__(self, texts: dict[int | str, str]) -> None:
        super().__init__("/nonexistent")
        self.texts = texts

    def read(self, pid: int | str, name: str) -> bytes | None:
        text = self.texts.get(pid)
        return text.encode() if text is not None and name == "status" else None


def test_the_handlers_last_read_while_a_process_lived_are_kept_for_its_exit() -> None:
    pid = PIDS["handler"]
    text = STATUS[str(pid)]["status"]  # SigCgt 0x4002: SIGINT, SIGTERM
    procfs = _Procfs({pid: text})
    facts = TaskFacts(procfs)
    assert facts.caught(pid) is None  # never read: unknown
    facts.status(pid)
    assert facts.caught(pid) == 0x4002
    # a zombie's SigCgt reads 0 (its sighand is gone): not a fact, the last one stays
    procfs.texts[pid] = re.sub(r"(?m)^SigCgt:.*$", "SigCgt:\t0", text.replace("\tS", "\tZ"))
    facts.status(pid)
    assert facts.caught(pid) == 0x4002
    facts.forget(pid)
    assert facts.caught(pid) is None


def test_a_sigkills_target_state_names_its_handlers() -> None:
    st = _status("handler")
    kill = target_state_when_sent(st, 9, False)
    assert kill.caught == 0x4002 and "target_state.caught" in kill.derived
    term = target_state_when_sent(st, 15, False)
    assert term.caught is None and "target_state.caught" not in term.derived
    assert target_state_when_sent(None, 9, False).caught is None
