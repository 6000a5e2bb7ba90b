"""The tracefs backend's records, replayed from lines recorded on the real kernel.

tests/data/tracefs/record.py captured the trace_pipe lines, the process-events exits and each
workload's /proc status; here they go through TraceLineTranslator and the Correlator as in a run,
with /proc served from the recording.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sigtrace import wire
from sigtrace.backends.procevents import ProcExit
from sigtrace.backends.proctask import TaskFacts
from sigtrace.backends.tracefs_parse import parse_line
from sigtrace.backends.tracefs_records import SavedNames, TraceLineTranslator
from sigtrace.backends.userfilter import Filters
from sigtrace.correlate import Correlator
from sigtrace.procfs import Procfs

DATA = Path(__file__).resolve().parents[1] / "data" / "tracefs"
PIDS = json.loads((DATA / "scenarios.pids.json").read_text())
STATUS = json.loads((DATA / "scenarios.status.json").read_text())
Rec = dict


class RecordedProcfs(Procfs):
    def read(self, pid: int | str, name: str) -> bytes | None:
        entry = STATUS.get(str(pid))
        return entry["status"].encode() if entry and name == "status" else None

    def pidns_inum(self, pid: int | str) -> int:
        entry = STATUS.get(str(pid))
        return int(entry["pidns"].rpartition("[")[2].rstrip("]")) if entry else 0


def replay(filters: Filters | None = None, wanted: frozenset[int] = frozenset({9, 15})) -> list:
    builder = TraceLineTranslator(
        TaskFacts(RecordedProcfs("/nonexistent")), wanted, filters or Filters()
    )
    records: list[wire.Record] = []
    for line in (DATA / "scenarios.trace").read_text().splitlines():
        p = parse_line(line)
        assert p is not None, line
        records += builder.line(p)
    records = builder.confirm(builder.patch_tgids(records))
    for e in json.loads((DATA / "scenarios.exits.json").read_text()):
        records += builder.proc_exit(ProcExit(**e))
    records.sort(key=lambda r: r.ts_ns)
    return records


@pytest.fixture(scope="module")
def out() -> list[Rec]:
    corr = Correlator(str)
    result = []
    for rec in replay():
        result += corr.feed(rec)
    return result + corr.flush(None)


def signals(out: list[Rec], target: int, sender: int | None = None) -> list[Rec]:
    return [
        r
        for r in out
        if r["type"] == "signal"
        and r["target"]["pid"] == target
        and (sender is None or r["sender"]["pid"] == sender)
    ]


def delivers(out: list[Rec], pid: int) -> list[Rec]:
    return [r for r in out if r["type"] == "deliver" and r["target"]["pid"] == pid]


def exit_of(out: list[Rec], pid: int) -> Rec:
    (ex,) = [r for r in out if r["type"] == "exit" and r["process"]["pid"] == pid]
    return ex


def test_init_ignores_sigterm_from_itself_and_from_the_host(out: list[Rec]) -> None:
    init = PIDS["init"]
    inside = signals(out, init, sender=init)
    host = [s for s in signals(out, init, sender=PIDS["recorder"]) if s["signo"] == 15]
    for s in (*inside, *host):
        assert (s["outcome"], s["reason"], s["result"]) == ("ignored", "pid1_no_handler", "ignored")
        assert s["target"]["ns_pid"] == 1 and s["target_state"]["unkillable"] is True
        assert s["syscall"] == "kill" and s["scope"] == "process"
        assert "target_state.handler" in s["derived"] and "target.ns_pid" in s["derived"]
    assert len(inside) == 1 and len(host) == 1
    assert inside[0]["si_pid"] == 1  # its own namespace
    assert host[0]["si_pid"] == 0  # from an ancestor namespace


def test_handler_sig_ign_blocked_and_merged(out: list[Rec]) -> None:
    (h,) = signals(out, PIDS["handler"], sender=PIDS["recorder"])
    assert (h["outcome"], h["target_state"]["handler"]) == ("delivered", "handler")
    assert h["si_pid"] == PIDS["recorder"]
    (d,) = delivers(out, PIDS["handler"])
    assert d["action"] == "handler" and d["code"] == "SI_USER"
    (i,) = signals(out, PIDS["ignorer"])
    assert (i["outcome"], i["reason"]) == ("ignored", "sig_ign")
    first, second = signals(out, PIDS["blocker"])
    assert (first["outcome"], first["reason"]) == ("pending", "blocked")
    assert (second["outcome"], second["reason"]) == ("merged", "already_pending")


def test_default_sigterm_is_reported_as_sigkill_and_exits_143(out: list[Rec]) -> None:
    (s,) = signals(out, PIDS["termed"])
    assert s["outcome"] == "delivered"
    (d,) = delivers(out, PIDS["termed"])
    assert (d["signal"], d["reported_as"], d["action"]) == (
        "SIGTERM",
        "SIGKILL",
        "default_terminate",
    )
    assert "signal" in d["derived"]  # inferred from the SIGTERM that caused the group exit
    ex = exit_of(out, PIDS["termed"])
    assert (ex["exit_code"], ex["signal"]) == (143, "SIGTERM")
    assert out.index(s) < out.index(d) < out.index(ex)


def test_sigkill_exits_137(out: list[Rec]) -> None:
    (d,) = delivers(out, PIDS["killed"])
    assert (d["signal"], d["reported_as"]) == ("SIGKILL", None)
    assert exit_of(out, PIDS["killed"])["exit_code"] == 137


def test_sigkill_and_exit_name_the_handlers_read_from_proc(out: list[Rec]) -> None:
    # Only a SIGKILL's target is read for them: who had work to do when it came
    for s in (s for s in out if s["type"] == "signal" and s["target_state"]):
        assert (s["target_state"]["caught"] is None) == (s["signo"] != 9), s
        assert ("target_state.caught" in s.get("derived", [])) == (s["signo"] == 9)
    (kill,) = [s for s in signals(out, PIDS["init"], sender=PIDS["recorder"]) if s["signo"] == 9]
    assert kill["target_state"]["caught"] == ["SIGINT", "SIGCHLD"]  # sh: the init
    (teardown,) = signals(out, PIDS["init_child"])
    assert teardown["target_state"]["caught"] == []  # sleep: none at all, not unknown
    # An exit's: the last read while the process lived (its zombie's SigCgt reads 0)
    for role, caught in (("init", ["SIGINT", "SIGCHLD"]), ("handler", ["SIGINT", "SIGTERM"])):
        ex = exit_of(out, PIDS[role])
        assert (ex["caught"], ex["derived"]) == (caught, ["caught"])


def test_kill_of_a_process_group_is_one_fanout_of_three(out: list[Rec]) -> None:
    sigs = [s for p in PIDS["pgrp"] for s in signals(out, p)]
    assert len(sigs) == 3
    fan = sigs[0]["fanout"]
    assert fan == {"id": fan["id"], "count": 3, "requested": -PIDS["pgrp"][0]}
    assert all(s["fanout"] == fan and s["scope"] == "pgrp" for s in sigs)


def test_failed_kill_is_one_failed_record(out: list[Rec]) -> None:
    (f,) = [r for r in out if r["type"] == "signal" and r["outcome"] == "failed"]
    assert f["reason"] == "EPERM" and f["target"]["pid"] == PIDS["handler"]
    assert f["sender"]["pid"] == PIDS["eperm_sender"] and f["sender"]["comm"] == "kill"
    # kill(1) was gone from /proc when its lines were handled: the rest of it is unknown
    assert (f["sender"]["ns_pid"], f["sender"]["uid"], f["sender"]["pid1"]) == (None, None, None)
    assert "derived" not in f


def failed_kill(task: str, *after: str, saved: SavedNames = lambda tids: {}) -> Rec:
    """kill(1, SIGTERM) failing with EPERM, traced as `task` (`comm-pid (tgid)`, as ftrace
    prints it from its caches), then `after` (lines of the same batch)."""
    builder = TraceLineTranslator(
        TaskFacts(RecordedProcfs("/nonexistent")), frozenset({15}), Filters(), saved
    )
    recs: list[wire.Record] = []
    for rest in ("sys_kill(pid: 0x1, sig: 0xf)", "sys_kill -> 0xffffffffffffffff", *after):
        p = parse_line(f"  {task} [001] .....  6429.415757: {rest}")
        assert p is not None, rest
        recs += builder.line(p)
    (f,) = Correlator(str).feed(builder.confirm(recs)[0])
    assert (f["outcome"], f["reason"]) == ("failed", "EPERM")
    return f


def test_failed_kill_lists_the_senders_fields_read_from_proc() -> None:
    pid = PIDS["handler"]  # running python, /proc status recorded
    f = failed_kill(f"python-{pid} ({pid})")
    assert (f["sender"]["pid"], f["sender"]["ns_pid"], f["sender"]["comm"]) == (pid, pid, "python")
    assert f["derived"] == ["sender.ns_pid", "sender.uid"]


def test_a_stale_ftrace_name_of_a_running_sender_gives_way_to_proc() -> None:
    # ftrace's caches still name an earlier task with this pid (a thread of 18558's)
    pid = PIDS["handler"]
    f = failed_kill(f"docker-{pid} (18558)")
    assert (f["sender"]["pid"], f["sender"]["comm"]) == (pid, "python")
    assert f["derived"] == ["sender.ns_pid", "sender.uid", "sender.pid", "sender.comm"]


def test_a_sender_gone_from_proc_is_named_by_its_exit_or_ftraces_caches_read_again() -> None:
    def unread(tids: set[int]) -> dict:
        raise AssertionError("its exit line named it")

    exit_line = "sched_process_exit: comm=kill pid=31000 prio=120 group_dead=true"
    f = failed_kill("kill-31000 (31000)", exit_line, saved=unread)
    assert (f["sender"]["pid"], f["sender"]["tid"], f["sender"]["comm"]) == (31000, 31000, "kill")
    # Stale names, and no exit line of its own: ftrace's caches, read now that it is gone
    f = failed_kill("docker-31000 (18558)", saved=lambda tids: {31000: ("kill", 31000)})
    assert (f["sender"]["pid"], f["sender"]["comm"]) == (31000, "kill")
    # ... which no longer have it: unknown, not the stale names
    f = failed_kill("docker-31000 (18558)")
    assert (f["sender"]["pid"], f["sender"]["tid"], f["sender"]["comm"]) == (None, 31000, None)
    assert "derived" not in f


def test_init_exit_tears_down_its_namespace(out: list[Rec]) -> None:
    assert exit_of(out, PIDS["init"])["exit_code"] == 137
    (t,) = signals(out, PIDS["init_child"])
    assert (t["scope"], t["code"], t["outcome"]) == ("pidns_teardown", "SI_KERNEL", "delivered")
    assert exit_of(out, PIDS["init_child"])["exit_code"] == 137


def test_exits_only_of_processes_that_took_part(out: list[Rec]) -> None:
    ended = {r["process"]["pid"] for r in out if r["type"] == "exit"}
    # the EPERM sender generated nothing: its exit is not news (as on the kernel side)
    assert PIDS["eperm_sender"] not in ended
    assert {PIDS["init"], PIDS["termed"], PIDS["killed"], PIDS["handler"]} <= ended


def test_pid_filter_in_user_space() -> None:
    recs = replay(Filters(pids=frozenset({PIDS["ignorer"]})))
    gens = [r for r in recs if isinstance(r, wire.Generate)]
    assert [g.target.pid for g in gens] == [PIDS["ignorer"]]
    # a failed call that names a traced pid is still reported
    failed = replay(Filters(pids=frozenset({PIDS["handler"]})))
    assert any(isinstance(r, wire.Syscall) and r.ret == -1 for r in failed)


def test_cgroup_filter_without_cgroups_matches_nothing() -> None:
    # --container with no cgroup id yet (--wait): nothing passes, as in the kernel
    assert replay(Filters(cgroups_active=True)) == []


def test_signal_filter() -> None:
    recs = replay(wanted=frozenset({9}))
    assert {r.sig for r in recs if isinstance(r, wire.Generate)} == {9}


def test_what_was_not_read_is_null_not_false(out: list[Rec]) -> None:
    # No tracepoint field or /proc file says whether the target waited in sigtimedwait.
    states = [s["target_state"] for s in out if s["type"] == "signal" and s["target_state"]]
    assert states and {t["waiting"] for t in states} == {None}
    # A target gone from /proc before its line was handled (a teardown's victim): its state
    # is unknown, not SIG_DFL, unblocked, killable and untraced.
    line = (
        "              sh-22636   (  22636) [001] d..1.  6430.000000: signal_generate: sig=9 "
        "errno=0 code=128 comm=sleep pid=99999 grp=1 res=0"
    )
    builder = TraceLineTranslator(
        TaskFacts(RecordedProcfs("/nonexistent")), frozenset({9}), Filters()
    )
    p = parse_line(line)
    assert p is not None
    (s,) = Correlator(str).feed(builder.line(p)[0])
    assert s["target"]["ns_pid"] is None
    assert s["target_state"] == dict.fromkeys(
        ("handler", "blocked", "unkillable", "ptraced", "waiting", "caught")
    )


def test_a_finished_call_is_news_only_for_a_fanouts_count_or_a_failure() -> None:
    from sigtrace.backends.userfilter import call_is_news

    assert call_is_news(emitted=1, fanout=False, count=1, ret=0) is False
    assert call_is_news(emitted=3, fanout=True, count=3, ret=0) is True
    assert call_is_news(emitted=0, fanout=False, count=2, ret=0) is False  # all filtered out
    assert call_is_news(emitted=0, fanout=True, count=0, ret=0) is False  # sent none, no error
    assert call_is_news(emitted=0, fanout=False, count=0, ret=-1) is None  # if it is traced
