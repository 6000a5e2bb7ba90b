"""The BCC backend's records (bcc_program.c's bytes → wire records), with /proc served from a
recorded status: what came from /proc is listed in `derived`, what was gone is null."""

from __future__ import annotations

import json
from pathlib import Path

from sigtrace import wire
from sigtrace.backends.bcc_records import BT_F_TRACKED, BccTranslator, pack
from sigtrace.backends.procevents import ProcExit
from sigtrace.backends.proctask import TaskFacts
from sigtrace.backends.userfilter import Filters
from sigtrace.correlate import Correlator
from sigtrace.procfs import Procfs

DATA = Path(__file__).resolve().parents[1] / "data" / "tracefs"
PIDS = json.loads((DATA / "scenarios.pids.json").read_text())
STATUS = json.loads((DATA / "scenarios.status.json").read_text())
EPERM = -1


class RecordedProcfs(Procfs):
    def read(self, pid: int | str, name: str) -> bytes | None:
        entry = STATUS.get(str(pid))
        return entry["status"].encode() if entry and name == "status" else None


def failed_kill(sender: int) -> dict:
    """kill(1, SIGTERM) by `sender` (uid 65534 as the kernel recorded it) that failed."""
    raw = pack(
        "bt_syscall", ts_ns=1000, kind=wire.KIND_SYSCALL, seq=7, ret=EPERM, nr=wire.SYS_KILL,
        sig=15, req_pid=1, sender={"pid": sender, "tid": sender, "uid": 65534, "comm": b"kill"},
    )  # fmt: skip
    builder = BccTranslator(TaskFacts(RecordedProcfs("/nonexistent")), frozenset({15}), Filters())
    (rec,) = builder.build([raw])
    (out,) = Correlator(str).feed(rec)
    assert (out["outcome"], out["reason"], out["sender"]["pid"]) == ("failed", "EPERM", sender)
    assert out["sender"]["uid"] == 65534  # the kernel's, whatever /proc says
    return out


def test_failed_kill_lists_the_senders_namespace_pid_read_from_proc() -> None:
    sender = PIDS["handler"]  # one whose /proc status was recorded
    out = failed_kill(sender)
    assert out["sender"]["ns_pid"] == sender and out["derived"] == ["sender.ns_pid"]


def test_failed_kill_of_a_sender_gone_from_proc_has_no_namespace_pid() -> None:
    out = failed_kill(PIDS["eperm_sender"])  # kill(1) exits before its record is handled
    assert (out["sender"]["ns_pid"], out["sender"]["pid1"]) == (None, None)
    assert "derived" not in out


def generate(sig: int, target: int, seq: int) -> bytes:
    """kill(target, sig) by the recorder, as the BCC program records it."""
    rec = PIDS["recorder"]
    return pack(
        "bt_generate", ts_ns=1000 + seq, kind=wire.KIND_GENERATE, seq=seq, sys_nr=wire.SYS_KILL,
        req_pid=target, flags=wire.F_SYSCALL, sig=sig, group=1, target_tid=target,
        target_comm=b"python", sender={"pid": rec, "tid": rec, "comm": b"python"},
    )  # fmt: skip


def test_a_sigkills_and_an_exits_caught_are_read_from_proc() -> None:
    """The BCC program reads no task_struct (its headers need not match the kernel): the
    target's SigCgt comes from /proc, read when the batch is handled, and its exit keeps it."""
    handler = PIDS["handler"]  # SIGINT and SIGTERM caught
    died = pack(
        "bt_exit", ts_ns=1009, kind=wire.KIND_EXIT, flags=BT_F_TRACKED,
        task={"pid": handler, "tid": handler, "comm": b"p"},
    )  # fmt: skip
    facts = TaskFacts(RecordedProcfs("/nonexistent"))
    builder = BccTranslator(facts, frozenset({9, 15}), Filters())
    records = builder.build([generate(9, handler, 1), generate(15, handler, 2), died])
    records += builder.proc_exit(ProcExit(1010, 0, handler, handler, 9))
    corr = Correlator(str)
    kill, term, ex = (out for rec in records for out in corr.feed(rec))
    assert kill["target_state"]["caught"] == ["SIGINT", "SIGTERM"]
    assert "target_state.caught" in kill["derived"]
    assert term["target_state"]["caught"] is None
    assert "target_state.caught" not in term["derived"]
    assert (ex["type"], ex["caught"], ex["derived"]) == ("exit", ["SIGINT", "SIGTERM"], ["caught"])
    assert facts.caught(handler) is None  # forgotten with the process: its pid may come back
    # Gone from /proc before its record was handled: unknown, not "no handlers"
    (gone,) = builder.build([generate(9, 99999, 3)])
    assert gone.caught is None
    (out,) = corr.feed(gone)
    assert out["target_state"]["caught"] is None
