"""The correlator on synthetic records (ordering, fan-out, failures) and on streams recorded
from the real kernel (tests/data/streams, made by record.py there)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sigtrace import wire
from sigtrace.commands.replay import replay_records
from sigtrace.correlate import SYSCALL_WAIT_NS, Correlator
from sigtrace.rawlog import read
from sigtrace.timefmt import Clock

STREAMS = Path(__file__).parents[1] / "data" / "streams"


def task(pid: int, comm: str = "p", ns_pid: int | None = None) -> wire.Task:
    return wire.Task(0, 0, pid, pid, ns_pid or pid, ns_pid or pid, 1, 0, comm)


def gen(
    ts: int,
    target: int,
    sig: int = 15,
    seq: int = 0,
    result: int = 0,
    flags: int = 0,
    handler: int = wire.HANDLER_DFL,
    sender: int = 10,
    req: int | None = None,
) -> wire.Generate:
    """A generated signal; with seq, sent by kill(req) (req <= 0: a fan-out)."""
    if seq:
        flags |= wire.F_SYSCALL
        req = target if req is None else req
        if req <= 0:
            flags |= wire.F_FANOUT
    return wire.Generate(
        ts,
        0,
        seq,
        wire.SYS_KILL if seq else 0,
        req or 0,
        0,
        sig,
        0,
        0,
        sender,
        0,
        wire.INFO_PTR,
        1,
        result,
        handler,
        flags,
        task(sender),
        task(target),
    )


def syscall(
    ts: int, seq: int, req: int, count: int, ret: int = 0, sig: int = 15, nr: int = wire.SYS_KILL
) -> wire.Syscall:
    return wire.Syscall(ts, 0, seq, ret, nr, sig, req, 0, count, 0, task(10))


def corr() -> Correlator:
    return Correlator(Clock(0).iso)


def test_fanout_waits_for_its_syscall_and_counts() -> None:
    c = corr()
    assert c.feed(gen(1, 21, seq=7, req=-21)) == []
    assert c.feed(gen(2, 22, seq=7, req=-21)) == []
    assert c.feed(gen(3, 23, seq=7, req=-21)) == []
    out = c.feed(syscall(4, 7, req=-21, count=3))
    assert [o["target"]["pid"] for o in out] == [21, 22, 23]
    assert {json.dumps(o["fanout"]) for o in out} == {
        json.dumps({"id": 7, "count": 3, "requested": -21})
    }
    assert {o["scope"] for o in out} == {"pgrp"}
    assert {o["syscall"] for o in out} == {"kill"}


def test_fanout_read_from_registers_goes_out_at_once_without_a_count() -> None:
    """--no-syscalls: the call was read from the sender's registers (seq 0); no syscall
    record will come, so nothing waits and the count is unknown, not invented."""
    g = gen(1, 21, req=-21)
    g = g._replace(flags=wire.F_SYSCALL | wire.F_FANOUT, sys_nr=wire.SYS_KILL, req_pid=-21)
    c = corr()
    (out,) = c.feed(g)
    assert out["fanout"] == {"id": None, "count": None, "requested": -21}
    assert (out["scope"], out["syscall"]) == ("pgrp", "kill")
    assert c.feed(gen(2, 22)) != []  # nothing held back behind it
    assert c.flush() == []


def test_single_target_goes_out_at_once_without_fanout() -> None:
    (out,) = corr().feed(gen(1, 21, seq=8))
    assert (out["fanout"], out["scope"], out["syscall"]) == (None, "process", "kill")


def test_a_repeated_signal_gets_its_own_time_and_names_described_again_after_a_wait() -> None:
    """The same signal again (a storm) is built from the first one's output: its own time, a
    record of its own, and after idle() (a wait) or a second, names described anew."""
    name = ["first"]  # what describing a process says now
    c = Correlator(Clock(0).iso, lambda t, role: {"pid": t.pid, "comm": name[0]})
    (a,) = c.feed(gen(1, 21))
    (b,) = c.feed(gen(2, 21))
    assert (a["time"], b["time"]) == (Clock(0).iso(1), Clock(0).iso(2))
    assert a is not b and list(a) == list(b)  # same keys, in the same order
    a["stamp"] = "x"  # a daemon's stamp on one record is not on the next
    assert "stamp" not in c.feed(gen(3, 21))[0]
    name[0] = "second"
    assert c.feed(gen(4, 21))[0]["target"]["comm"] == "first"  # within the memo's second
    c.idle()
    assert c.feed(gen(5, 21))[0]["target"]["comm"] == "second"
    name[0] = "third"
    (d,) = c.feed(wire.Deliver(5, 0, 15, 0, 10, wire.INFO_PTR, 0, 0, 0, task(21)))
    assert d["target"]["comm"] == "second"  # the memo a Generate filled
    c.flush(10 + 2 * 10**9)  # over a second later
    assert c.feed(gen(6, 21))[0]["target"]["comm"] == "third"


def test_failed_syscall_becomes_a_failed_signal() -> None:
    (out,) = corr().feed(syscall(5, 9, req=4242, count=0, ret=-1))
    assert (out["outcome"], out["reason"], out["target"]["pid"], out["target"]["comm"]) == (
        "failed",
        "EPERM",
        4242,
        None,
    )


def test_failed_syscall_lists_what_its_backend_took_from_proc() -> None:
    sc = syscall(5, 9, req=4242, count=0, ret=-1)._replace(derived=("sender.ns_pid",))
    (out,) = corr().feed(sc)
    assert out["derived"] == ["sender.ns_pid"]
    assert "derived" not in corr().feed(syscall(5, 9, req=4242, count=0, ret=-1))[0]


def test_successful_syscall_without_traced_signals_says_nothing() -> None:
    assert corr().feed(syscall(5, 9, req=4242, count=0, ret=0)) == []


def test_records_behind_a_waiting_syscall_are_held_in_time_order() -> None:
    c = corr()
    c.feed(gen(10, 21, seq=3, req=0))
    # the target's delivery, on another CPU, overtakes the sender's syscall exit
    d = wire.Deliver(12, 1, 15, 0, 10, wire.INFO_PTR, wire.HANDLER_FUNC, 0, 0, task(21))
    assert c.feed(d) == []
    out = c.feed(syscall(11, 3, req=0, count=1))
    assert [o["type"] for o in out] == ["signal", "deliver"]
    # nothing waiting: records go straight out
    assert [o["type"] for o in c.feed(gen(20, 22))] == ["signal"]


def test_overdue_syscall_flushes_without_fanout() -> None:
    c = corr()
    c.feed(gen(1, 21, seq=4, req=-21))
    assert c.flush(1 + SYSCALL_WAIT_NS // 2) == []
    (out,) = c.flush(2 + SYSCALL_WAIT_NS)  # the sender died inside kill(), say
    assert out["fanout"] is None and (out["scope"], out["syscall"]) == ("pgrp", "kill")


def test_caught_names_the_handlers_a_sigkill_met_and_an_exit_left() -> None:
    # SIGINT, SIGTERM, glibc's SIG32, SIGRTMIN+2 and SIGRTMAX: by number, named as `signal`
    mask = 1 << 1 | 1 << 14 | 1 << 31 | 1 << 35 | 1 << 63
    names = ["SIGINT", "SIGTERM", "SIG32", "SIGRTMIN+2", "SIGRTMAX"]
    c = corr()
    (kill,) = c.feed(gen(1, 21, sig=9)._replace(caught=mask))
    assert list(kill["target_state"])[-1] == "caught" and kill["target_state"]["caught"] == names
    (none,) = c.feed(gen(2, 22, sig=9)._replace(caught=0))
    assert none["target_state"]["caught"] == []  # read: no handler at all, not unknown
    (term,) = c.feed(gen(3, 23, sig=15))
    assert term["target_state"]["caught"] is None  # not read for other signals
    (ex,) = c.feed(wire.Exit(4, 0, 9, 0, task(21), caught=mask))
    assert list(ex)[-1] == "caught" and ex["caught"] == names and "derived" not in ex
    (ex,) = c.feed(wire.Exit(5, 0, 9, 0, task(22), caught=1 << 14, derived=("caught",)))
    assert (ex["caught"], ex["derived"]) == (["SIGTERM"], ["caught"])
    (ex,) = c.feed(wire.Exit(6, 0, 9, 0, task(23)))
    assert ex["caught"] is None


def load(name: str) -> tuple[list[dict], dict]:
    with open(STREAMS / f"{name}.raw", "rb") as f:
        offset, records = read(f)
        out = replay_records(offset, list(records))
    pids = json.loads((STREAMS / f"{name}.pids.json").read_text())
    return out, pids


def one(records: list[dict], **match) -> dict:
    found = [r for r in records if all(_get(r, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


def _get(rec: dict, key: str):
    for part in key.split("__"):
        rec = rec.get(part) if isinstance(rec, dict) else None
    return rec


def test_recorded_pid1_story() -> None:
    out, pids = load("pid1")
    init = pids["init"]
    term = one(out, type="signal", signal="SIGTERM", target__pid=init, sender__pid=init)
    assert (term["outcome"], term["reason"], term["target"]["ns_pid"]) == (
        "ignored",
        "pid1_no_handler",
        1,
    )
    assert term["si_pid"] == 1  # sent from inside: the sender is visible in the namespace
    kill_inside = one(out, type="signal", signal="SIGKILL", target__pid=init, sender__pid=init)
    assert (kill_inside["outcome"], kill_inside["reason"]) == ("ignored", "pid1_no_handler")
    host = pids["tracer_host_sender"]
    term_host = one(out, type="signal", signal="SIGTERM", target__pid=init, sender__pid=host)
    assert (term_host["outcome"], term_host["si_pid"]) == ("ignored", 0)
    kill_host = one(out, type="signal", signal="SIGKILL", target__pid=init, sender__pid=host)
    assert kill_host["outcome"] == "delivered"
    ex = one(out, type="exit", process__pid=init)
    assert (ex["exit_code"], ex["signal"]) == (137, "SIGKILL")


def test_recorded_dispositions() -> None:
    out, p = load("dispositions")
    s = p["sender"]
    assert (
        one(out, type="signal", target__pid=p["handler"], sender__pid=s)["outcome"] == "delivered"
    )
    assert one(out, type="deliver", target__pid=p["handler"])["action"] == "handler"
    assert one(out, type="exit", process__pid=p["handler"])["exit_code"] == 0
    ign = one(out, type="signal", target__pid=p["ign"])
    assert (ign["outcome"], ign["reason"]) == ("ignored", "sig_ign")
    blocked = [r for r in out if r["type"] == "signal" and r["target"]["pid"] == p["blocked"]]
    assert [(r["outcome"], r["reason"]) for r in blocked] == [
        ("pending", "blocked"),
        ("merged", "already_pending"),
    ]
    fan = [r for r in out if r["type"] == "signal" and r["scope"] == "pgrp"]
    assert sorted(r["target"]["pid"] for r in fan) == sorted(p["members"])
    assert {json.dumps(r["fanout"]) for r in fan} == {
        json.dumps({"id": fan[0]["fanout"]["id"], "count": 3, "requested": -p["pgrp"]})
    }
    for m in p["members"]:
        d = one(out, type="deliver", target__pid=m)
        assert (d["signal"], d["action"], d["reported_as"]) == (
            "SIGTERM",
            "default_terminate",
            "SIGKILL",
        )
        assert one(out, type="exit", process__pid=m)["exit_code"] == 143
    eperm = one(out, type="signal", target__pid=p["victim"], outcome="failed")
    assert eperm["reason"] == "EPERM"
    assert one(out, type="exit", process__pid=p["victim"])["exit_code"] == 137
    # SIGKILLed with a SIGTERM handler (sh's trap) and without any (sleep): read in the kernel
    # when the SIGKILL was generated and again at the exit
    trapped = one(out, type="signal", signal="SIGKILL", target__pid=p["trapper"])
    assert "SIGTERM" in trapped["target_state"]["caught"]
    assert "SIGTERM" in one(out, type="exit", process__pid=p["trapper"])["caught"]
    plain = one(out, type="signal", signal="SIGKILL", target__pid=p["victim"])
    assert plain["target_state"]["caught"] == []
    assert one(out, type="exit", process__pid=p["victim"])["caught"] == []
    assert one(out, type="signal", target__pid=p["ign"])["target_state"]["caught"] is None


def test_replay_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.raw"
    bad.write_bytes(b"not a recording\n")
    with open(bad, "rb") as f, pytest.raises(ValueError):
        read(f)


def test_replay_tells_the_story_with_the_pid_namespace_for_the_container() -> None:
    out, pids = load("pid1")
    (v,) = [r for r in out if r["type"] == "verdict"]
    init = pids["init"]
    assert (v["verdict"], v["pid1"]["pid"], v["exit_code"]) == ("ignored_by_pid1", init, 137)
    assert v["container"]["id"].startswith("pidns:") and v["container"]["name"] is None
    assert v["culprit"]["pid"] == init and v["wasted_s"] == v["grace_s"] > 0
    host = one(
        out,
        type="signal",
        signal="SIGTERM",
        target__pid=init,
        sender__pid=pids["tracer_host_sender"],
    )
    assert host["sender"]["container"] is None  # the host's pid namespace: no container
    assert out.index(v) > out.index(one(out, type="exit", process__pid=init))
