"""`sigtrace daemon` against the real kernel: its graceful SIGTERM in the middle of a burst, and
its Prometheus counters checked against the JSONL records of the same run."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.root.helpers import flood
from tests.tracing import Record, Tracer, by_labels, parse_lines, scrape_metrics, wait_for

if TYPE_CHECKING:
    from tests.root.helpers import Agents

NODE = "node-under-test"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[..., Tracer]]:
    """Starts `sigtrace daemon ARGS` (records on its stdout, into a file); live when returned."""
    started: list[Tracer] = []

    def start(*args: str) -> Tracer:
        n = len(started)
        d = Tracer(
            ["--node-name", NODE, *args],
            tmp_path / f"daemon{n}.jsonl",
            tmp_path / f"daemon{n}.err",
            command=("daemon",),
        )
        started.append(d)
        d.wait_started()
        return d

    yield start
    for d in started:
        d.close()


def test_sigterm_during_a_burst_cuts_no_record_and_reports_the_lost(
    daemon: Callable[..., Tracer], agents: Agents
) -> None:
    target = agents("USR1=ignore")
    # One page of ring buffer: a flood is sure to overrun it, so records are lost for real.
    d = daemon("--signal", "USR1", "--pid", str(target.pid), "--buffer-size", "4K")
    with flood(target.pid, signal.SIGUSR1, seconds=10):
        time.sleep(1.0)  # the flood under way, the buffer overrunning
        sent = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        code = d.proc.wait(5)
        took = time.monotonic() - sent
    records = d.wait_exit()  # exit 0, every line whole JSON, one stop record, last
    assert code == 0, d.stderr()
    assert took < 1.0, f"the daemon took {took:.2f} s to exit after SIGTERM"
    assert all(r["node"] == NODE for r in records)
    assert sum(r["type"] == "signal" for r in records) > 10
    stop = records[-1]
    lost = [r for r in records if r["type"] == "lost"]
    assert stop["lost"] > 0, "a 4K ring under a flood lost nothing: is the count reported?"
    assert stop["lost"] == sum(r["count"] for r in lost)
    # at most one a second while it lasts (~1 s here), and the rest at the end
    assert len(lost) <= 3, [r["time"] for r in lost]


def test_metrics_agree_with_the_records_of_the_same_run(
    daemon: Callable[..., Tracer], agents: Agents
) -> None:
    handled, ignoring, sender = agents("USR2=handler"), agents("USR2=ignore"), agents()
    init = agents(pidns=True)  # a namespace's PID 1 without a USR2 handler
    gone = agents()
    gone.send("exit 0")  # a pid nobody has (for a while): kill() fails with ESRCH
    gone.wait()
    pids = [p.pid for p in (handled, ignoring, sender, init)]
    d = daemon(
        "--signal", "USR2,KILL", "--metrics", "127.0.0.1:0", "--syscalls",  # the failed kill
        *[a for p in pids for a in ("--pid", str(p))],
    )  # fmt: skip

    sender.run(f"kill {handled.pid} USR2")
    handled.expect("got 12")
    for _ in range(3):
        sender.run(f"kill {ignoring.pid} USR2")
    for _ in range(2):
        sender.run(f"kill {init.pid} USR2")
    sender.run(f"kill {gone.pid} USR2", reply="error 3")
    sender.run(f"kill {init.pid} KILL")
    init.wait()

    def records() -> list[Record]:
        return parse_lines(d.out_path.read_text())

    def settled() -> bool:
        recs = records()
        return sum(r["type"] == "signal" for r in recs) == 8 and any(
            r["type"] == "exit" and r["process"]["pid"] == init.pid for r in recs
        )

    wait_for(settled, what="8 signal records and the init's exit")
    before = records()
    samples = scrape_metrics(d.stderr())
    assert records() == before, "records arrived while scraping: the counts would not compare"

    sigs = [r for r in before if r["type"] == "signal"]
    want = Counter((r["signal"], r["outcome"], r["reason"] or "") for r in sigs)
    assert want == Counter(
        {
            ("SIGUSR2", "delivered", ""): 1,
            ("SIGUSR2", "ignored", "sig_ign"): 3,
            ("SIGUSR2", "ignored", "pid1_no_handler"): 2,
            ("SIGUSR2", "failed", "ESRCH"): 1,
            ("SIGKILL", "delivered", ""): 1,
        }
    ), sigs
    got = by_labels(samples["sigtrace_signals_total"], "signal", "outcome", "reason")
    assert got == want
    # Outside any container: the container labels are empty, never invented.
    assert {(lb["container"], lb["pod"]) for lb, _ in samples["sigtrace_signals_total"]} == {
        ("", "")
    }
    types = by_labels(samples["sigtrace_events_total"], "type")
    assert types == Counter((r["type"],) for r in before)
    assert samples["sigtrace_lost_records_total"][0][1] == 0
    assert samples["sigtrace_tracing_up"][0][1] == 1

    final = d.stop()
    assert final[: len(before)] == before
    assert final[-1]["lost"] == 0


def test_json_log_lines_on_stderr(daemon: Callable[..., Tracer]) -> None:
    """--log-format json: every stderr line is one JSON object (time, level, logger, msg);
    stdout carries only records."""
    d = daemon("--log-format", "json", "--log-level", "info", "--metrics", "127.0.0.1:0")
    samples = scrape_metrics(d.stderr())  # the URL is found in the JSON line as in the text one
    assert samples["sigtrace_tracing_up"] == [({}, 1.0)]
    records = d.stop()
    assert all(r["schema"] == "sigtrace.v1" for r in records)
    lines = [json.loads(line) for line in d.stderr().splitlines()]
    assert lines and all(set(line) >= {"time", "level", "logger", "msg"} for line in lines)
    assert {line["level"] for line in lines} == {"info"}
    msgs = [line["msg"] for line in lines]
    assert msgs[0].startswith("backend core: ") and lines[0]["backend"] == "core"
    assert any(m.startswith("metrics on http://127.0.0.1:") for m in msgs)
    assert msgs[-1].startswith("stopped (pid ")
    quiet = daemon("--log-format", "json", "--log-level", "warning")
    quiet.stop()
    assert quiet.stderr() == ""  # nothing went wrong: nothing at warning or above


def test_idle_daemon_wakes_for_sighup_and_sigterm(agents: Agents, tmp_path: Path) -> None:
    """Idle, the daemon waits with no timeout: a signal must still wake it. logrotate's
    move-then-SIGHUP goes to a new file, then SIGTERM ends it within a second."""
    target = agents("USR1=handler")
    out, moved = tmp_path / "records.jsonl", tmp_path / "records.jsonl.1"
    d = Tracer(
        ["--node-name", NODE, "--signal", "USR1", "--pid", str(target.pid), "--output", str(out)],
        tmp_path / "stdout",
        tmp_path / "daemon.err",
        command=("daemon",),
    )
    try:
        wait_for(lambda: out.exists() and '"start"' in out.read_text(), what="start record")
        time.sleep(0.5)  # idle: nothing to wait for but records and signals
        out.rename(moved)
        d.proc.send_signal(signal.SIGHUP)
        wait_for(out.exists, what="the output reopened after SIGHUP")
        os.kill(target.pid, signal.SIGUSR1)
        target.expect("got 10")
        wait_for(lambda: '"signal"' in out.read_text(), what="the signal in the new file")
        time.sleep(0.5)
        sent = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        code = d.proc.wait(5)
        took = time.monotonic() - sent
    finally:
        d.close()
    assert code == 0, d.stderr()
    assert took < 1.0, f"the idle daemon took {took:.2f} s to exit after SIGTERM"
    old, new = parse_lines(moved.read_text()), parse_lines(out.read_text())
    assert [r["type"] for r in old] == ["start"]
    assert [r["type"] for r in new] == ["signal", "deliver", "stop"], new
