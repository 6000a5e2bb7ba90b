"""Termination stories end to end: real containers, real `docker stop`, `sigtrace --container`
running beside it, and `sigtrace explain` asked before the stop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # types only: two conftest.py modules share the name at run time
    from conftest import ContainerFactory

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
GRACE_S = 2
VERDICT_TIMEOUT_S = 8.0  # the settle window (1.5 s) and a few ticks after the exit


def sigtrace(*args: str) -> list[str]:
    return [sys.executable, "-m", "sigtrace", *args]


def records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    return [json.loads(line) for line in text.splitlines() if line.endswith("}")]


def wait_for(path: Path, kind: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        recs = records(path)
        if any(r["type"] == kind for r in recs):
            return recs
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {kind} record after {timeout}s: {recs}")
        time.sleep(0.05)


def explain(name: str) -> tuple[int, dict[str, Any]]:
    r = subprocess.run(
        sigtrace("explain", "--container", name, "--format", "jsonl"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode in (0, 10), r.stderr
    return r.returncode, json.loads(r.stdout)


def trace_stop(name: str, container_id: str, tmp_path: Path) -> list[dict[str, Any]]:
    """`docker stop -t 2` under `sigtrace --container`; the records, the verdict live."""
    out = tmp_path / "trace.jsonl"
    with open(out, "w") as f, open(tmp_path / "trace.err", "w") as err:
        proc = subprocess.Popen(
            sigtrace("--container", name, "--format", "jsonl"), cwd=REPO, stdout=f, stderr=err
        )
    try:
        wait_for(out, "start", 15.0)
        subprocess.run(["docker", "stop", "-t", str(GRACE_S), container_id], check=True)
        wait_for(out, "verdict", VERDICT_TIMEOUT_S)  # before we stop tracing: not a flush
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    recs = records(out)
    assert recs[-1]["type"] == "stop"
    return recs


def pid1_signals(recs: list[dict[str, Any]], sig: str) -> list[dict[str, Any]]:
    return [r for r in recs if r["type"] == "signal" and r["signal"] == sig and r["target"]["pid1"]]


def the_verdict(recs: list[dict[str, Any]], container_id: str) -> dict[str, Any]:
    verdicts = [r for r in recs if r["type"] == "verdict"]
    assert len(verdicts) == 1, verdicts
    assert verdicts[0]["container"]["id"] == container_id
    return verdicts[0]


def test_shellform_stop_is_predicted_then_told_as_ignored_by_pid1(
    container_factory: ContainerFactory, tmp_path: Path
) -> None:
    c = container_factory("story-shell", "st-shellform")
    c.wait_for_log("ready")
    code, pred = explain(c.name)
    assert (code, pred["expect"], pred["graceful"]) == (10, "ignored_by_pid1", False)
    assert [p["comm"] for p in pred["processes"][:2]] == ["sh", "server.sh"]

    recs = trace_stop(c.name, c.id, tmp_path)
    (term,) = pid1_signals(recs, "SIGTERM")
    assert (term["outcome"], term["reason"]) == ("ignored", "pid1_no_handler")
    kill = pid1_signals(recs, "SIGKILL")[0]
    assert kill["sender"]["container"] is None  # the runtime, from outside
    (exit1,) = [r for r in recs if r["type"] == "exit" and r["process"]["pid1"]]
    assert exit1["exit_code"] == 137
    v = the_verdict(recs, c.id)
    assert v["verdict"] == "ignored_by_pid1" and v["exit_code"] == 137
    assert 1.5 <= v["wasted_s"] <= 4
    assert "exec form" in v["hint"] or "--init" in v["hint"]
    assert v["stop_at"] == term["time"] and v["kill_at"] == kill["time"]


def test_execform_stop_is_predicted_then_told_as_graceful(
    container_factory: ContainerFactory, tmp_path: Path
) -> None:
    c = container_factory("story-exec", "st-execform")
    c.wait_for_log("ready")
    code, pred = explain(c.name)
    assert (code, pred["expect"], pred["graceful"]) == (0, "graceful", True)

    recs = trace_stop(c.name, c.id, tmp_path)
    (term,) = pid1_signals(recs, "SIGTERM")
    assert term["outcome"] == "delivered"
    assert pid1_signals(recs, "SIGKILL") == []
    v = the_verdict(recs, c.id)
    assert (v["verdict"], v["exit_code"], v["kill_at"]) == ("graceful", 0, None)
