"""Every backend on the same scenarios, on the real kernel; where one cannot see something,
the test asserts its documented difference (the start record's `cannot_see`, `derived`).

Also: `auto` under features hidden through sigtrace's own settings (--sys-root without BTF
or tracefs, SIGTRACE_DENY_BPF), and that killing a tracer leaves nothing behind: no stopped
or still-traced process after ptrace, no ftrace instance after tracefs.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sigtrace_root_helpers import (
    REPO,
    delivers,
    exits,
    one,
    parse_lines,
    signals,
    sigtrace_cmd,
    wait_for,
)

from sigtrace.backends import registry

if TYPE_CHECKING:
    from sigtrace_root_helpers import Agent, Record, StartTracer

    Agents = Callable[..., Agent]

ME = os.getpid()
BACKENDS = ["core", "tracefs", "ptrace"] + (["bcc"] if "bcc" in registry() else [])
TRACEFS = Path("/sys/kernel/tracing")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def start(tracer: StartTracer, backend: str, sigs: list[str], pids: list[int]) -> object:
    return tracer(signals=sigs, pids=pids, extra=["--backend", backend])


def started(records: list[Record], backend: str) -> Record:
    first = records[0]
    assert first["type"] == "start" and first["backend"] == backend
    return first


def proc_field(pid: int, key: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def state(pid: int) -> str:
    # /proc/<pid>/stat: "pid (comm) S ...", comm may hold spaces and parentheses
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


# --- the scenarios ---------------------------------------------------------------------------


def test_namespace_init_ignores_sigterm_from_the_host(
    tracer: StartTracer, agents: Agents, backend: str
) -> None:
    init = agents(pidns=True)
    t = start(tracer, backend, ["TERM"], [init.pid])
    os.kill(init.pid, signal.SIGTERM)
    assert init.alive()
    records = t.stop()  # type: ignore[attr-defined]

    first = started(records, backend)
    s = one(signals(records, target_pid=init.pid), "signal to the init")
    assert (s["outcome"], s["reason"]) == ("ignored", "pid1_no_handler")
    assert s["target"]["ns_pid"] == 1 and s["target"]["pid1"] is True
    assert s["target_state"]["unkillable"] is True and s["target_state"]["handler"] == "default"
    assert s["si_pid"] == 0  # sent from an ancestor namespace
    assert delivers(records, pid=init.pid) == []
    if backend == "ptrace":
        # it saw the signal only because tracing made the kernel queue it
        assert s["target_state"]["ptraced"] is True
        assert {"result", "outcome", "target_state.unkillable"} <= set(s["derived"])
        assert s["sender"]["pid"] is None  # si_pid 0: outside the init's namespace
        assert any("ptrace changes what it observes" in c for c in first["cannot_see"])
    else:
        assert s["sender"]["pid"] == ME and s["syscall"] == "kill"
    if backend == "tracefs":
        assert {"target_state.handler", "target_state.unkillable", "si_pid"} <= set(s["derived"])


def test_handler_gets_it(tracer: StartTracer, agents: Agents, backend: str) -> None:
    a = agents("TERM=handler")
    t = start(tracer, backend, ["TERM"], [a.pid])
    os.kill(a.pid, signal.SIGTERM)
    a.expect("got 15")
    records = t.stop()  # type: ignore[attr-defined]

    s = one(signals(records, target_pid=a.pid), "signal")
    assert (s["outcome"], s["reason"]) == ("delivered", None)
    assert s["target_state"]["handler"] == "handler" and s["si_pid"] == ME
    assert s["sender"]["pid"] == ME and s["code"] == "SI_USER"
    d = one(delivers(records, pid=a.pid), "deliver")
    assert (d["action"], d["signal"], d["reported_as"]) == ("handler", "SIGTERM", None)
    assert records.index(s) < records.index(d)
    assert ("derived" in s) == (backend != "core")


def test_sig_ign_is_ignored(tracer: StartTracer, agents: Agents, backend: str) -> None:
    a = agents("TERM=ignore")
    t = start(tracer, backend, ["TERM"], [a.pid])
    os.kill(a.pid, signal.SIGTERM)
    assert a.alive()
    records = t.stop()  # type: ignore[attr-defined]

    s = one(signals(records, target_pid=a.pid), "signal")
    assert (s["outcome"], s["reason"]) == ("ignored", "sig_ign")
    assert s["target_state"]["handler"] == "ignore"
    assert delivers(records, pid=a.pid) == []


def test_exit_codes_0_143_137(tracer: StartTracer, agents: Agents, backend: str) -> None:
    clean, termed, killed = agents("TERM=handler"), agents(), agents()
    t = start(tracer, backend, ["TERM", "KILL"], [clean.pid, termed.pid, killed.pid])
    os.kill(clean.pid, signal.SIGTERM)
    clean.expect("got 15")
    clean.send("exit 0")
    assert clean.wait() == 0
    os.kill(termed.pid, signal.SIGTERM)
    assert termed.wait() == -signal.SIGTERM
    os.kill(killed.pid, signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    records = t.stop()  # type: ignore[attr-defined]

    for proc, code, sig in ((clean, 0, None), (termed, 143, "SIGTERM"), (killed, 137, "SIGKILL")):
        ex = one(exits(records, pid=proc.pid), f"exit {code}")
        assert (ex["exit_code"], ex["signal"], ex["core_dumped"]) == (code, sig, False)
    d = one(delivers(records, pid=termed.pid), "deliver of the default SIGTERM")
    assert (d["signal"], d["action"]) == ("SIGTERM", "default_terminate")
    s = one(signals(records, target_pid=termed.pid), "SIGTERM")
    assert s["outcome"] == "delivered"
    if backend == "ptrace":
        # A traced task's fatal signal is no group exit at generation: no SIGKILL report.
        assert d["reported_as"] is None
        # SIGKILL never stops a tracee: only its exit is seen.
        assert signals(records, target_pid=killed.pid) == []
        assert delivers(records, pid=killed.pid) == []
        first = started(records, backend)
        assert any("SIGKILL is never seen as a stop" in c for c in first["cannot_see"])
    else:
        assert d["reported_as"] == "SIGKILL"
        k = one(signals(records, target_pid=killed.pid), "SIGKILL")
        assert (k["signal"], k["outcome"]) == ("SIGKILL", "delivered")


def test_23_sigusr1_counted_exactly(tracer: StartTracer, agents: Agents, backend: str) -> None:
    n = 23
    a = agents("USR1=handler")
    t = start(tracer, backend, ["USR1"], [a.pid])
    for _ in range(n):
        os.kill(a.pid, signal.SIGUSR1)
        a.expect("got 10")
    records = t.stop()  # type: ignore[attr-defined]

    sigs = signals(records, target_pid=a.pid, signo=signal.SIGUSR1)
    assert len(sigs) == n
    assert all(s["outcome"] == "delivered" for s in sigs)
    assert len(delivers(records, pid=a.pid, signal="SIGUSR1")) == n
    assert records[-1]["records"]["signal"] == n and records[-1]["lost"] == 0


def test_kill_of_a_process_group(tracer: StartTracer, agents: Agents, backend: str) -> None:
    leader = agents("TERM=handler", process_group=0)
    members = [leader] + [agents("TERM=handler", process_group=leader.pid) for _ in range(2)]
    pids = sorted(m.pid for m in members)
    t = start(tracer, backend, ["TERM"], pids)
    os.kill(-leader.pid, signal.SIGTERM)
    for m in members:
        m.expect("got 15")
    records = t.stop()  # type: ignore[attr-defined]

    sigs = signals(records, signo=15)
    assert sorted(s["target"]["pid"] for s in sigs) == pids
    assert len(delivers(records, signal="SIGTERM")) == 3
    if backend == "ptrace":
        # No system calls seen: three signals, no fan-out, and the scope is not known.
        assert all(s["fanout"] is None and "scope" in s["derived"] for s in sigs)
        first = started(records, backend)
        assert any("no system call" in c for c in first["cannot_see"])
        return
    fanout = sigs[0]["fanout"]
    assert fanout == {"id": fanout["id"], "count": 3, "requested": -leader.pid}
    assert all(s["fanout"] == fanout and s["scope"] == "pgrp" for s in sigs)


# --- auto, with features hidden through sigtrace's own settings ------------------------------


@pytest.fixture
def sys_without_btf(tmp_path: Path) -> Iterator[Path]:
    """A /sys with tracefs and cgroups, but no kernel/btf/vmlinux."""
    root = tmp_path / "sys"
    (root / "kernel").mkdir(parents=True)
    (root / "kernel" / "tracing").symlink_to(TRACEFS)
    (root / "fs").symlink_to("/sys/fs")
    yield root


def _auto(tracer: StartTracer, pids: list[int], sys_root: Path | None) -> object:
    extra = ["--sys-root", str(sys_root)] if sys_root else []
    return tracer(signals=["TERM"], pids=pids, extra=extra)


def test_auto_without_btf_chooses_tracefs(
    tracer: StartTracer, agents: Agents, sys_without_btf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "bcc" in BACKENDS:
        monkeypatch.setenv("SIGTRACE_DENY_BPF", "1")  # BCC needs no BTF: refuse bpf() too
    a = agents("TERM=handler")
    t = _auto(tracer, [a.pid], sys_without_btf)
    os.kill(a.pid, signal.SIGTERM)
    a.expect("got 15")
    records = t.stop()  # type: ignore[attr-defined]
    first = started(records, "tracefs")
    assert "skipped core (" in first["why"]
    assert one(signals(records, target_pid=a.pid))["outcome"] == "delivered"


def test_auto_with_bpf_refused_chooses_tracefs(
    tracer: StartTracer, agents: Agents, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGTRACE_DENY_BPF", "1")
    a = agents("TERM=handler")
    t = _auto(tracer, [a.pid], None)
    records = t.stop()  # type: ignore[attr-defined]
    first = started(records, "tracefs")
    assert "skipped core (bpf: bpf() refused" in first["why"]


def test_auto_without_btf_and_tracefs_chooses_ptrace(
    tracer: StartTracer, agents: Agents, sys_without_btf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGTRACE_DENY_BPF", "1")
    (sys_without_btf / "kernel" / "tracing").unlink()
    a = agents("TERM=handler")
    t = _auto(tracer, [a.pid], sys_without_btf)
    os.kill(a.pid, signal.SIGTERM)
    a.expect("got 15")
    records = t.stop()  # type: ignore[attr-defined]
    first = started(records, "ptrace")
    assert "tracefs (tracefs: no tracefs under" in first["why"]
    assert one(delivers(records, pid=a.pid))["action"] == "handler"


def test_ptrace_needs_targets() -> None:
    r = subprocess.run(
        sigtrace_cmd("--backend", "ptrace"), capture_output=True, text=True, timeout=30, cwd=REPO
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    (error,) = r.stderr.splitlines()  # one line: the choice is logged only for auto
    assert error.startswith("sigtrace: ") and "--pid, --container or --pod" in error


# --- ending a run leaves nothing behind ------------------------------------------------------


def _flood(pid: int, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            return
        time.sleep(0.0005)


@pytest.mark.parametrize(
    "how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["TERM", "INT", "KILL"]
)
def test_ending_ptrace_leaves_the_tracee_running(
    tracer: StartTracer, agents: Agents, how: int
) -> None:
    a = agents("USR1=handler")
    t = tracer(signals=["USR1"], pids=[a.pid], extra=["--backend", "ptrace"])
    wait_for(lambda: proc_field(a.pid, "TracerPid") == str(t.pid), what="ptrace attached")
    stop = threading.Event()
    flood = threading.Thread(target=_flood, args=(a.pid, stop))
    flood.start()  # signal-delivery-stops in flight while the tracer goes away
    try:
        time.sleep(0.3)
        if how == signal.SIGKILL:
            t.proc.kill()
            t.proc.wait(10)
        else:
            records = t.stop(how)
            assert records[-1]["type"] == "stop"
    finally:
        stop.set()
        flood.join()
    wait_for(lambda: proc_field(a.pid, "TracerPid") == "0", what="the kernel detached it")
    assert state(a.pid) not in ("t", "T"), f"left stopped: {state(a.pid)}"
    while True:  # still running: it answers (after the handler lines of the flood)
        a.send("ping")
        line = a.lines.get(timeout=10)
        while line is not None and line.startswith("got"):
            line = a.lines.get(timeout=10)
        if line == "pong":
            break
    assert a.proc.poll() is None


def test_group_stop_under_ptrace_is_kept_and_sigcont_resumes(
    tracer: StartTracer, agents: Agents
) -> None:
    a = agents()
    t = tracer(signals=["STOP", "CONT"], pids=[a.pid], extra=["--backend", "ptrace"])
    os.kill(a.pid, signal.SIGSTOP)
    wait_for(lambda: state(a.pid) in ("t", "T"), what="stopped by SIGSTOP")
    a.send("ping")
    with pytest.raises(queue.Empty):
        a.lines.get(timeout=0.5)  # stopped for real (PTRACE_LISTEN), not resumed by us
    os.kill(a.pid, signal.SIGCONT)
    a.expect("pong")  # and SIGCONT resumes it
    os.kill(a.pid, signal.SIGSTOP)
    wait_for(lambda: state(a.pid) in ("t", "T"), what="stopped again")

    # The stop is reported from the tracer's own loop, a moment after the kernel stops it.
    def stop_records() -> int:
        text = t.out_path.read_text()
        return len(signals(parse_lines(text[: text.rfind("\n") + 1]), a.pid, None, 19))

    wait_for(lambda: stop_records() >= 2, what="both SIGSTOP signal records written")
    records = t.stop()
    assert proc_field(a.pid, "TracerPid") == "0"
    assert state(a.pid) == "T"  # detached, still stopped by its SIGSTOP, as without us
    os.kill(a.pid, signal.SIGCONT)
    assert a.alive()
    assert len(signals(records, target_pid=a.pid, signo=signal.SIGSTOP)) == 2


def test_one_tracer_per_process(tracer: StartTracer, agents: Agents) -> None:
    a = agents()
    tracer(signals=["TERM"], pids=[a.pid], extra=["--backend", "ptrace"])
    r = subprocess.run(
        sigtrace_cmd("--backend", "ptrace", "--pid", str(a.pid)),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    line = r.stderr.splitlines()[-1]
    assert r.returncode == 6 and "one tracer per process" in line, r.stderr
    assert "Traceback" not in r.stderr
    assert a.alive()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_ending_tracefs_removes_its_instance(tracer: StartTracer, how: int) -> None:
    t = tracer(signals=["USR2"], extra=["--backend", "tracefs"])
    instance = TRACEFS / "instances" / f"sigtrace-{t.pid}"
    assert instance.is_dir()
    t.stop(how)
    assert not instance.exists()


def test_tracefs_removes_stale_instances_at_start(tracer: StartTracer) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = TRACEFS / "instances" / f"sigtrace-{dead.pid}"
    stale.mkdir()
    try:
        t = tracer(signals=["USR2"], extra=["--backend", "tracefs"])
        assert not stale.exists()
        t.stop()
    finally:
        if stale.exists():
            stale.rmdir()


def test_a_signal_in_flight_when_ptrace_stops_is_not_lost(
    tracer: StartTracer, agents: Agents
) -> None:
    a = agents("USR1=handler")
    t = tracer(signals=["USR1"], pids=[a.pid], extra=["--backend", "ptrace"])
    os.kill(t.pid, signal.SIGSTOP)  # the tracer frozen: the tracee's next signal waits for it
    try:
        os.kill(a.pid, signal.SIGUSR1)
        wait_for(lambda: state(a.pid) == "t", what="a signal-delivery-stop")
        os.kill(t.pid, signal.SIGTERM)
    finally:
        os.kill(t.pid, signal.SIGCONT)
    t.wait_exit()
    a.expect("got 10")  # re-injected, not dropped
    assert proc_field(a.pid, "TracerPid") == "0" and a.alive()
