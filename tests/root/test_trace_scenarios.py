"""What sigtrace reports for signals the tests send themselves, on the real kernel.

Every workload is started first and reports its own host and namespace pid; the tracer is
then started with `--pid` filters naming it, so other activity on the machine cannot leak in.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.root.helpers import ME, NOBODY, SIGRTMIN_2, end_three_ways, flood, pidns_init
from tests.tracing import delivers, exits, one, parse_lines, signals, wait_for

if TYPE_CHECKING:
    from tests.root.helpers import Agents, StartTracer
    from tests.tracing import Record


def assert_counts_match(records: list[Record]) -> None:
    """The stop record counts exactly the records that were written."""
    stop = records[-1]
    written = Counter(r["type"] for r in records if r["type"] not in ("start", "stop"))
    assert stop["records"] == dict(written)
    assert stop["lost"] == 0
    assert records[0]["type"] == "start"


# 1 ------------------------------------------------------------------------------------------


def test_pid1_without_handler_ignores_sigterm_from_itself_and_from_the_host(
    tracer: StartTracer, agents: Agents
) -> None:
    init = agents(pidns=True)
    assert init.ns_pid == 1 and init.pid != 1
    t = tracer(signals=["TERM"], pids=[init.pid])

    init.run("kill 1 TERM")
    os.kill(init.pid, signal.SIGTERM)
    assert init.alive()
    records = t.stop()

    inside = one(signals(records, target_pid=init.pid, sender_pid=init.pid), "signal from init")
    host = one(signals(records, target_pid=init.pid, sender_pid=ME), "signal from the host")
    for r in (inside, host):
        assert r["signal"] == "SIGTERM" and r["signo"] == 15
        assert (r["outcome"], r["reason"]) == ("ignored", "pid1_no_handler")
        assert r["result"] == "ignored"
        assert r["scope"] == "process" and r["fanout"] is None
        assert r["syscall"] == "kill"
        assert r["target"]["pid"] == init.pid
        assert r["target"]["ns_pid"] == 1 and r["target"]["pid1"] is True
        assert r["target_state"]["handler"] == "default"
        assert r["target_state"]["unkillable"] is True
    # si_pid is the sender as the target sees it: itself (1), or 0 from an ancestor namespace.
    assert inside["si_pid"] == 1
    assert inside["sender"]["ns_pid"] == 1 and inside["sender"]["pid1"] is True
    assert host["si_pid"] == 0
    assert host["sender"]["ns_pid"] == ME and host["sender"]["pid1"] is False
    assert delivers(records, pid=init.pid) == []
    assert exits(records, pid=init.pid) == []
    assert_counts_match(records)


# 2 ------------------------------------------------------------------------------------------


def test_pid1_ignores_its_own_sigkill_but_dies_of_the_hosts(
    tracer: StartTracer, agents: Agents
) -> None:
    init = agents(pidns=True)
    t = tracer(signals=["KILL"], pids=[init.pid])

    init.run("kill 1 KILL")
    assert init.alive(), "PID 1 died of its own SIGKILL"
    os.kill(init.pid, signal.SIGKILL)
    init.wait()  # unshare returns once its child, the init, is gone
    records = t.stop()

    inside = one(signals(records, target_pid=init.pid, sender_pid=init.pid), "self SIGKILL")
    assert inside["signal"] == "SIGKILL"
    assert (inside["outcome"], inside["reason"]) == ("ignored", "pid1_no_handler")
    assert inside["target"]["ns_pid"] == 1 and inside["target"]["pid1"] is True
    assert inside["si_pid"] == 1

    host = one(signals(records, target_pid=init.pid, sender_pid=ME), "host SIGKILL")
    assert host["signal"] == "SIGKILL"
    assert (host["outcome"], host["reason"]) == ("delivered", None)
    assert host["target"]["ns_pid"] == 1 and host["si_pid"] == 0

    ex = one(exits(records, pid=init.pid), "exit")
    assert ex["exit_code"] == 137 and ex["signal"] == "SIGKILL"
    assert ex["process"]["ns_pid"] == 1 and ex["process"]["pid1"] is True
    assert ex["core_dumped"] is False and ex["oom"] is False
    order = [r for r in records if r in (inside, host, ex)]
    assert order == [inside, host, ex]
    assert_counts_match(records)


def test_namespace_teardown_names_who_had_work_to_do(tracer: StartTracer) -> None:
    """PID 1 dies; the kernel SIGKILLs what is left in its namespace. Each SIGKILL (and exit)
    says which signals its process had a handler for: a shell that traps SIGTERM had work to
    do; a sleep had none ([], not unknown)."""
    trap = "sh -c 'trap \"exit 0\" TERM; while :; do sleep 1; done' & sleep 600 & wait"
    with pidns_init(trap, 2) as (init, sh, kids):
        trapper, sleeper = sorted(kids, key=lambda p: _status(p, "Name") != "sh")
        wait_for(lambda: int(_status(trapper, "SigCgt"), 16) & 1 << 14, what="its TERM trap")
        t = tracer(signals=["KILL"], pids=[sh, trapper, sleeper])
        os.kill(sh, signal.SIGKILL)
        init.wait(10)
        records = t.stop()

    for pid, has_term in ((trapper, True), (sleeper, False)):
        s = one(signals(records, target_pid=pid), "teardown SIGKILL")
        assert (s["scope"], s["sender"]["pid"]) == ("pidns_teardown", sh)
        assert ("SIGTERM" in s["target_state"]["caught"]) == has_term
        ex = one(exits(records, pid=pid), "exit")
        assert ex["exit_code"] == 137 and ex["caught"] == s["target_state"]["caught"]
    assert one(signals(records, target_pid=sleeper))["target_state"]["caught"] == []


def _status(pid: int, key: str) -> str:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(line.split(":", 1)[1].strip() for line in lines if line.startswith(key + ":"))


# 3 ------------------------------------------------------------------------------------------


def test_handled_sigterm_is_delivered_to_the_handler(tracer: StartTracer, agents: Agents) -> None:
    a = agents("TERM=handler")
    t = tracer(signals=["TERM"], pids=[a.pid])

    os.kill(a.pid, signal.SIGTERM)
    a.expect("got 15")
    records = t.stop()

    s = one(signals(records, target_pid=a.pid), "signal")
    assert (s["outcome"], s["reason"]) == ("delivered", None)
    assert s["signal"] == "SIGTERM" and s["code"] == "SI_USER"
    assert s["sender"]["pid"] == ME and s["si_pid"] == ME
    assert s["target"]["ns_pid"] == a.pid and s["target"]["pid1"] is False
    assert s["scope"] == "process" and s["fanout"] is None and s["syscall"] == "kill"
    d = one(delivers(records, pid=a.pid), "deliver")
    assert d["action"] == "handler" and d["signal"] == "SIGTERM" and d["reported_as"] is None
    assert records.index(s) < records.index(d)
    assert_counts_match(records)


@pytest.mark.parametrize("name", ["USR1", "TERM"])
def test_signal_record_shows_the_targets_handler(
    tracer: StartTracer, agents: Agents, name: str
) -> None:
    # Not HUP: sighand->action[0] reads right even with a wrong stride.
    signo = signal.Signals["SIG" + name].value
    a = agents(f"{name}=handler")
    t = tracer(signals=[name], pids=[a.pid])
    os.kill(a.pid, signo)
    a.expect(f"got {signo}")
    s = one(signals(t.stop(), target_pid=a.pid), "signal")
    assert s["target_state"]["handler"] == "handler"


# 4 ------------------------------------------------------------------------------------------


def test_sig_ign_is_ignored(tracer: StartTracer, agents: Agents) -> None:
    a = agents("TERM=ignore")
    t = tracer(signals=["TERM"], pids=[a.pid])

    os.kill(a.pid, signal.SIGTERM)
    assert a.alive()
    records = t.stop()

    s = one(signals(records, target_pid=a.pid), "signal")
    assert s["outcome"] == "ignored" and s["result"] == "ignored"
    assert s["target"]["pid1"] is False and s["target_state"]["unkillable"] is False
    assert delivers(records, pid=a.pid) == []


def test_sig_ign_is_ignored_for_reason_sig_ign(tracer: StartTracer, agents: Agents) -> None:
    a = agents("TERM=ignore")
    t = tracer(signals=["TERM"], pids=[a.pid])
    os.kill(a.pid, signal.SIGTERM)
    assert a.alive()
    s = one(signals(t.stop(), target_pid=a.pid), "signal")
    assert (s["outcome"], s["reason"]) == ("ignored", "sig_ign")
    assert s["target_state"]["handler"] == "ignore"


# 5 ------------------------------------------------------------------------------------------


def test_blocked_signal_is_pending_then_a_second_one_merges(
    tracer: StartTracer, agents: Agents
) -> None:
    a = agents("TERM=block")
    t = tracer(signals=["TERM"], pids=[a.pid])

    os.kill(a.pid, signal.SIGTERM)
    os.kill(a.pid, signal.SIGTERM)
    a.run("pending", "pending [15]")
    records = t.stop()

    sigs = signals(records, target_pid=a.pid)
    assert len(sigs) == 2, sigs
    first, second = sigs
    assert (first["outcome"], first["reason"]) == ("pending", "blocked")
    assert first["result"] == "delivered"
    assert (second["outcome"], second["reason"]) == ("merged", "already_pending")
    assert second["result"] == "already_pending"
    for s in (first, second):
        assert s["target_state"]["blocked"] is True
        assert s["sender"]["pid"] == ME
    assert delivers(records, pid=a.pid) == []


# 6 ------------------------------------------------------------------------------------------


def test_kill_of_a_process_group_is_one_fanout_of_three(
    tracer: StartTracer, agents: Agents
) -> None:
    leader = agents("TERM=handler", process_group=0)
    members = [leader] + [agents("TERM=handler", process_group=leader.pid) for _ in range(2)]
    pids = {m.pid for m in members}
    assert all(os.getpgid(p) == leader.pid for p in pids)
    t = tracer(signals=["TERM"], pids=sorted(pids), extra=["--syscalls"])  # for the count

    os.kill(-leader.pid, signal.SIGTERM)
    for m in members:
        m.expect("got 15")
    records = t.stop()

    sigs = signals(records, signo=15)
    assert len(sigs) == 3, sigs
    assert {s["target"]["pid"] for s in sigs} == pids
    fanout = sigs[0]["fanout"]
    assert isinstance(fanout, dict) and isinstance(fanout["id"], int)
    assert fanout == {"id": fanout["id"], "count": 3, "requested": -leader.pid}
    for s in sigs:
        assert s["fanout"] == fanout
        assert s["scope"] == "pgrp" and s["syscall"] == "kill"
        assert s["sender"]["pid"] == ME
        assert (s["outcome"], s["reason"]) == ("delivered", None)
    assert len(delivers(records, signal="SIGTERM")) == 3


# 7 ------------------------------------------------------------------------------------------


def test_kill_without_permission_is_one_failed_record(tracer: StartTracer, agents: Agents) -> None:
    a = agents("TERM=handler")
    t = tracer(signals=["TERM"], pids=[a.pid], extra=["--syscalls"])  # a failed call: no signal

    r = subprocess.run(
        [*NOBODY, "kill", "-TERM", str(a.pid)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert r.returncode != 0, r  # kill(1) reports the EPERM
    assert a.alive()
    records = t.stop()

    s = one(signals(records), "signal")
    assert s["signal"] == "SIGTERM"
    assert (s["outcome"], s["reason"]) == ("failed", "EPERM")
    assert s["sender"]["uid"] == 65534 and s["sender"]["comm"] == "kill"
    assert s["target"]["pid"] == a.pid
    assert s["target"]["comm"] is None and s["target"]["ns_pid"] is None
    assert s["result"] is None and s["target_state"] is None and s["si_pid"] is None
    assert s["scope"] == "process" and s["fanout"] is None
    assert delivers(records) == []


# 8 ------------------------------------------------------------------------------------------


def test_unfiltered_a_namespace_init_that_exits_by_itself_is_reported(
    tracer: StartTracer, agents: Agents
) -> None:
    init = agents(pidns=True)  # a container's PID 1, as far as the kernel can tell
    plain = agents()
    t = tracer(signals=["USR2"])  # no pid or container filter: host-wide
    init.send("exit 5")
    plain.send("exit 4")
    init.wait()
    plain.wait()
    wait_for(lambda: bool(exits(parse_lines(t.out_path.read_text()), pid=init.pid)))
    records = t.stop()

    ex = one(exits(records, pid=init.pid), "exit of the namespace's init")
    assert (ex["exit_code"], ex["process"]["pid1"], ex["process"]["ns_pid"]) == (5, True, 1)
    assert exits(records, pid=plain.pid) == [], "an ordinary exit without a signal is no news"


def test_exit_codes_after_traced_signals(tracer: StartTracer, agents: Agents) -> None:
    records, clean, termed, killed = end_three_ways(
        agents, lambda pids: tracer(signals=["TERM", "KILL"], pids=pids)
    )

    ex = one(exits(records, pid=clean.pid), "exit of the clean process")
    assert (ex["exit_code"], ex["signal"], ex["core_dumped"]) == (0, None, False)
    assert one(delivers(records, pid=clean.pid))["action"] == "handler"

    s = one(signals(records, target_pid=termed.pid))
    assert (s["signal"], s["outcome"]) == ("SIGTERM", "delivered")
    d = one(delivers(records, pid=termed.pid), "deliver of the default SIGTERM")
    assert d["action"] == "default_terminate"
    assert d["signal"] == "SIGTERM" and d["signo"] == 15
    assert d["reported_as"] == "SIGKILL"
    ex = one(exits(records, pid=termed.pid), "exit after SIGTERM")
    assert (ex["exit_code"], ex["signal"], ex["core_dumped"]) == (143, "SIGTERM", False)

    s = one(signals(records, target_pid=killed.pid))
    assert (s["signal"], s["outcome"]) == ("SIGKILL", "delivered")
    ex = one(exits(records, pid=killed.pid), "exit after SIGKILL")
    assert (ex["exit_code"], ex["signal"], ex["core_dumped"]) == (137, "SIGKILL", False)
    assert_counts_match(records)


# 9 ------------------------------------------------------------------------------------------


def test_23_handled_sigusr1_are_counted_exactly(tracer: StartTracer, agents: Agents) -> None:
    n = 23
    a = agents("USR1=handler")
    t = tracer(signals=["USR1"], pids=[a.pid])

    for _ in range(n):
        os.kill(a.pid, signal.SIGUSR1)
        a.expect("got 10")  # handled before the next one: none can merge
    records = t.stop()

    sigs = signals(records, target_pid=a.pid, sender_pid=ME, signo=signal.SIGUSR1)
    assert len(sigs) == n
    assert all((s["outcome"], s["reason"]) == ("delivered", None) for s in sigs)
    assert len(delivers(records, pid=a.pid, signal="SIGUSR1")) == n
    assert records[-1]["records"].get("signal") == n
    assert_counts_match(records)


# 10 -----------------------------------------------------------------------------------------


def test_sigchld_without_handler_is_ignored_by_default(tracer: StartTracer, agents: Agents) -> None:
    a = agents()
    t = tracer(signals=["all"], pids=[a.pid])

    subprocess.run(["kill", "-CHLD", str(a.pid)], check=True, timeout=10)
    assert a.alive()
    records = t.stop()

    s = one(signals(records, target_pid=a.pid, signo=signal.SIGCHLD), "SIGCHLD")
    assert s["signal"] == "SIGCHLD"
    assert (s["outcome"], s["reason"]) == ("ignored", "default_ignore")
    assert s["sender"]["comm"] == "kill"
    assert s["target_state"]["handler"] == "default"


# 11 -----------------------------------------------------------------------------------------


def test_realtime_filter_traces_only_that_signal(tracer: StartTracer, agents: Agents) -> None:
    target = agents("USR1=handler", "RTMIN+2=handler")
    sender = agents()
    t = tracer(signals=["RTMIN+2"], pids=[sender.pid, target.pid])

    for sig, signo in (("USR1", 10), ("RTMIN+2", SIGRTMIN_2), ("USR1", 10)):
        sender.run(f"kill {target.pid} {sig}")
        target.expect(f"got {signo}")
    records = t.stop()

    assert records[0]["filters"]["signals"] == ["SIGRTMIN+2"]
    s = one(signals(records), "signal")
    assert (s["signal"], s["signo"]) == ("SIGRTMIN+2", SIGRTMIN_2)
    assert s["sender"]["pid"] == sender.pid and s["target"]["pid"] == target.pid
    assert (s["outcome"], s["reason"]) == ("delivered", None)
    d = one(delivers(records), "deliver")
    assert (d["signal"], d["signo"], d["action"]) == ("SIGRTMIN+2", SIGRTMIN_2, "handler")
    assert all(r.get("signo") in (None, SIGRTMIN_2) for r in records)


# 12 -----------------------------------------------------------------------------------------


def test_duration_ends_the_tracer_by_itself(tracer: StartTracer) -> None:
    t = tracer(signals=["USR2"], extra=["--duration", "1"])
    began = time.monotonic()
    records = t.wait_exit(timeout=10)  # asserts exit 0, whole JSON lines, a stop record last
    assert time.monotonic() - began >= 0.8, "stopped well before --duration"
    assert records[0]["type"] == "start"
    assert_counts_match(records)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_sigterm_and_sigint_end_the_tracer_cleanly(
    tracer: StartTracer, agents: Agents, stop_signal: int
) -> None:
    a = agents("USR2=handler")
    t = tracer(signals=["USR2"], pids=[a.pid])
    for _ in range(3):
        os.kill(a.pid, signal.SIGUSR2)
        a.expect("got 12")
    records = t.stop(stop_signal)  # asserts exit 0, whole JSON lines, a stop record last

    assert len(signals(records, target_pid=a.pid, signo=signal.SIGUSR2)) == 3
    assert_counts_match(records)


# Found while writing the above ------------------------------------------------------------


def raw_kinds(path: Path) -> list[int]:
    """Record kinds in a --save-raw recording: a header line, then (u32 length, record)."""
    data = path.read_bytes()
    pos = data.index(b"\n") + 1
    kinds = []
    while pos < len(data):
        (n,) = struct.unpack_from("=I", data, pos)
        kinds.append(struct.unpack_from("=I", data, pos + 4 + 8)[0])  # after u64 ts_ns
        pos += 4 + n
    return kinds


def test_pid_filter_keeps_other_processes_kill_calls_out_of_the_kernel_buffer(
    tracer: StartTracer, agents: Agents, tmp_path: Path
) -> None:
    watched = agents()
    sender = agents()
    victim = agents("USR1=handler")
    raw = tmp_path / "trace.raw"
    t = tracer(signals=["USR1"], pids=[watched.pid], extra=["--syscalls", "--save-raw", str(raw)])

    sender.run(f"kill {victim.pid} USR1")
    victim.expect("got 10")
    records = t.stop()

    assert [r["type"] for r in records] == ["start", "stop"]
    assert raw_kinds(raw) == [], "records about processes outside --pid reached user space"


def test_sigterm_ends_the_tracer_during_a_signal_flood(tracer: StartTracer, agents: Agents) -> None:
    target = agents("USR1=ignore")
    t = tracer(signals=["USR1"], pids=[target.pid])
    with flood(target.pid, signal.SIGUSR1, seconds=8):
        time.sleep(0.5)  # the flood under way
        records = t.stop()  # within 5 s, though the flood goes on for 8
        assert signals(records, target_pid=target.pid)
