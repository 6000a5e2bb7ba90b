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
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sigtrace.backends import registry
from tests.root.helpers import ME, NOBODY, SIGRTMIN_2, end_three_ways
from tests.tracing import REPO, delivers, exits, one, parse_lines, signals, sigtrace_cmd, wait_for

if TYPE_CHECKING:
    from tests.root.helpers import Agents, StartTracer
    from tests.tracing import Record

BACKENDS = ["core", "tracefs", "ptrace"] + (["bcc"] if "bcc" in registry() else [])
TRACEFS = Path("/sys/kernel/tracing")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def start(tracer: StartTracer, backend: str, sigs: list[str], pids: list[int]) -> object:
    # --syscalls: everything each backend can see (test_no_syscalls.py: without the hook)
    return tracer(signals=sigs, pids=pids, extra=["--backend", backend, "--syscalls"])


def started(records: list[Record], backend: str) -> Record:
    first = records[0]
    assert first["type"] == "start" and first["backend"] == backend
    return first


def cannot_see(records: list[Record], backend: str, text: str) -> bool:
    """The start record lists `text` among what this backend cannot see."""
    return any(text in c for c in started(records, backend)["cannot_see"])


def verdict(s: Record) -> tuple[str, str | None, str | None]:
    """A signal record's outcome, its reason, and the tracepoint's result."""
    return s["outcome"], s["reason"], s["result"]


def read_from_proc(rec: Record, field: str, value: object) -> None:
    """A field its backend read from /proc when it handled the record, not from the kernel:
    `value`, listed in `derived`, or null when the process was gone by then (not listed)."""
    got: object = rec
    for key in field.split("."):
        got = got[key]  # type: ignore[index]
    if got is None:
        assert field not in rec.get("derived", []), rec
    else:
        assert got == value and field in rec["derived"], (field, rec)


def assert_sender(s: Record, backend: str, pid: int, comm: str) -> None:
    """A sender that exits at once (kill(1)), as its backend names it. Gone before it was
    named, it is unknown, not guessed: tracefs keeps the line's thread id (ftrace's comm and
    tgid columns may still name an earlier task with that pid); ptrace looks it up by si_pid."""
    sender = s["sender"]
    if sender["pid"] is None and backend in ("tracefs", "ptrace"):
        assert (sender["comm"], sender["ns_pid"]) == (None, None)
        assert sender["tid"] == (pid if backend == "tracefs" else None)
        assert not {"sender", "sender.pid", "sender.comm"} & set(s.get("derived", []))
    else:
        assert (sender["pid"], sender["tid"], sender["comm"]) == (pid, pid, comm)


def kill_cmd(*cmd: str, fails: bool = False) -> int:
    """Runs kill(1) (`cmd`, maybe under NOBODY) to its end; its pid: the signal's sender."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    code = proc.wait(10)
    assert (code != 0) == fails, f"{cmd}: exit {code}"  # kill(1) reports a failed kill()
    return proc.pid


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

    started(records, backend)
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
        assert cannot_see(records, backend, "ptrace changes what it observes")
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
    records, clean, termed, killed = end_three_ways(
        agents, lambda pids: start(tracer, backend, ["TERM", "KILL"], pids)
    )

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
        assert cannot_see(records, backend, "SIGKILL is never seen as a stop")
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
        assert cannot_see(records, backend, "no system call")
        return
    fanout = sigs[0]["fanout"]
    assert fanout == {"id": fanout["id"], "count": 3, "requested": -leader.pid}
    assert all(s["fanout"] == fanout and s["scope"] == "pgrp" for s in sigs)


def test_blocked_signal_is_pending_then_a_second_one_merges(
    tracer: StartTracer, agents: Agents, backend: str
) -> None:
    a = agents("TERM=block")
    t = start(tracer, backend, ["TERM"], [a.pid])
    os.kill(a.pid, signal.SIGTERM)
    os.kill(a.pid, signal.SIGTERM)
    a.run("pending", "pending [15]")
    records = t.stop()  # type: ignore[attr-defined]

    sigs = signals(records, target_pid=a.pid)
    assert delivers(records, pid=a.pid) == []
    if backend == "ptrace":
        # Never dequeued, so never a stop: neither signal is seen, and detaching left it.
        assert sigs == [] and cannot_see(records, backend, "no pending or merged signals")
        a.run("pending", "pending [15]")
        return
    first, second = sigs
    assert verdict(first) == ("pending", "blocked", "delivered")
    assert verdict(second) == ("merged", "already_pending", "already_pending")
    for s in (first, second):
        assert s["target_state"]["blocked"] is True and s["sender"]["pid"] == ME
        assert ("derived" in s) == (backend != "core")
        if backend != "core":  # the mask read from /proc: still blocked then
            assert "target_state.blocked" in s["derived"]


def test_kill_without_permission_is_one_failed_record(
    tracer: StartTracer, agents: Agents, backend: str
) -> None:
    a = agents("TERM=handler")
    t = start(tracer, backend, ["TERM"], [a.pid])
    sender = kill_cmd(*NOBODY, "kill", "-TERM", str(a.pid), fails=True)
    assert a.alive()
    records = t.stop()  # type: ignore[attr-defined]

    assert delivers(records) == []
    if backend == "ptrace":
        # kill() failed before generating anything: no signal, so no stop.
        assert signals(records) == [] and cannot_see(records, backend, "failures")
        return
    s = one(signals(records), "signal")
    assert (s["signal"], s["outcome"], s["reason"]) == ("SIGTERM", "failed", "EPERM")
    assert_sender(s, backend, sender, "kill")
    assert s["target"] == {"pid": a.pid, "tid": None, "ns_pid": None, "comm": None}
    assert (s["result"], s["target_state"], s["si_pid"]) == (None, None, None)
    assert (s["scope"], s["fanout"], s["syscall"]) == ("process", None, "kill")
    if backend == "core":
        assert s["sender"]["uid"] == 65534 and s["sender"]["ns_pid"] == sender
        assert "derived" not in s
        return
    # kill(1) may have exited before its record was handled: then /proc no longer has it.
    read_from_proc(s, "sender.ns_pid", sender)
    if backend == "tracefs":  # no uid in a trace line; its comm and pid from ftrace's caches
        read_from_proc(s, "sender.uid", 65534)
        assert cannot_see(records, backend, "ftrace's comm and tgid caches")
    else:  # bcc: the kernel side records the current task's uid
        assert s["sender"]["uid"] == 65534


def test_sigchld_without_handler_is_ignored_by_default(
    tracer: StartTracer, agents: Agents, backend: str
) -> None:
    a = agents()
    t = start(tracer, backend, ["all"], [a.pid])
    sender = kill_cmd("kill", "-CHLD", str(a.pid))
    assert a.alive()
    records = t.stop()  # type: ignore[attr-defined]

    s = one(signals(records, target_pid=a.pid, signo=signal.SIGCHLD), "SIGCHLD")
    assert verdict(s) == ("ignored", "default_ignore", "ignored")
    assert s["target_state"]["handler"] == "default" and s["code"] == "SI_USER"
    assert delivers(records, pid=a.pid) == []
    if backend == "ptrace":
        # Traced, it was queued and stopped the tracee: the untraced kernel's decision is
        # rebuilt; the sender is looked up by si_pid (the kernel's) when the stop is handled.
        assert s["target_state"]["ptraced"] is True and s["syscall"] is None
        assert {"result", "outcome", "target_state.handler"} <= set(s["derived"])
        assert s["si_pid"] == sender
        assert cannot_see(records, backend, "ptrace changes what it observes")
        assert_sender(s, backend, sender, "kill")
        assert ("sender" in s["derived"]) == (s["sender"]["pid"] is not None)
        return
    assert_sender(s, backend, sender, "kill")
    assert s["syscall"] == "kill" and s["target_state"]["ptraced"] is False
    if backend == "core":
        assert s["si_pid"] == sender and "derived" not in s
    else:  # handler read from the live target; si_pid from both tasks' namespaces
        assert "target_state.handler" in s["derived"]
        read_from_proc(s, "si_pid", sender)


def test_realtime_filter_traces_only_that_signal(
    tracer: StartTracer, agents: Agents, backend: str
) -> None:
    target = agents("USR1=handler", "RTMIN+2=handler")
    sender = agents()
    t = start(tracer, backend, ["RTMIN+2"], [sender.pid, target.pid])
    for sig, signo in (("USR1", 10), ("RTMIN+2", SIGRTMIN_2), ("USR1", 10)):
        sender.run(f"kill {target.pid} {sig}")
        target.expect(f"got {signo}")
    records = t.stop()  # type: ignore[attr-defined]

    assert records[0]["filters"]["signals"] == ["SIGRTMIN+2"]
    assert all(r.get("signo") in (None, SIGRTMIN_2) for r in records)
    s = one(signals(records), "signal")
    assert (s["signal"], s["signo"], s["code"]) == ("SIGRTMIN+2", SIGRTMIN_2, "SI_USER")
    assert (s["sender"]["pid"], s["target"]["pid"]) == (sender.pid, target.pid)
    assert verdict(s) == ("delivered", None, "delivered") and s["si_pid"] == sender.pid
    assert s["target_state"]["handler"] == "handler"
    d = one(delivers(records), "deliver")
    assert (d["signal"], d["signo"], d["action"]) == ("SIGRTMIN+2", SIGRTMIN_2, "handler")
    assert records.index(s) < records.index(d)
    if backend == "ptrace":  # seen at delivery: no system call; the sender found by si_pid
        assert s["syscall"] is None and s["scope"] == "process"
        assert {"sender", "scope", "outcome", "target_state.handler"} <= set(s["derived"])
    else:
        assert s["syscall"] == "kill"
    assert ("derived" in s) == (backend != "core")
    if backend in ("tracefs", "bcc"):
        # The mask is read when the record is handled: in the handler, the kernel blocks the
        # signal it runs for, so the mask it met when sent is not known then (null).
        read_from_proc(s, "target_state.blocked", False)
        assert cannot_see(records, backend, "caught signal whose handler was running")
    else:
        assert s["target_state"]["blocked"] is False


def test_pid1_ignores_its_own_sigkill_but_dies_of_the_hosts(
    tracer: StartTracer, agents: Agents, backend: str
) -> None:
    init = agents(pidns=True)
    t = start(tracer, backend, ["KILL"], [init.pid])
    init.run("kill 1 KILL")
    assert init.alive(), "PID 1 died of its own SIGKILL"
    os.kill(init.pid, signal.SIGKILL)
    init.wait()  # unshare returns once its child, the init, is gone
    records = t.stop()  # type: ignore[attr-defined]

    ex = one(exits(records, pid=init.pid), "exit")
    assert (ex["exit_code"], ex["signal"], ex["core_dumped"], ex["oom"]) == (
        137,
        "SIGKILL",
        False,
        False,
    )
    assert ex["process"]["ns_pid"] == 1 and ex["process"]["pid1"] is True
    if backend == "ptrace":
        # Its own SIGKILL was dropped when sent (tracing keeps other signals from being
        # ignored then, not SIGKILL), the host's never stops a tracee: only the exit is seen.
        assert signals(records) == [] and delivers(records) == []
        assert cannot_see(records, backend, "SIGKILL is never seen as a stop")
        return
    inside = one(signals(records, target_pid=init.pid, sender_pid=init.pid), "self SIGKILL")
    assert verdict(inside) == ("ignored", "pid1_no_handler", "ignored") and inside["si_pid"] == 1
    host = one(signals(records, target_pid=init.pid, sender_pid=ME), "host SIGKILL")
    assert verdict(host) == ("delivered", None, "delivered") and host["si_pid"] == 0
    for s in (inside, host):
        assert s["signal"] == "SIGKILL" and s["target"]["ns_pid"] == 1
        assert s["target_state"]["unkillable"] is True  # its namespace pid, known at start
    d = one(delivers(records, pid=init.pid), "deliver")
    assert (d["signal"], d["action"], d["reported_as"]) == ("SIGKILL", "default_terminate", None)
    assert [r for r in records if r in (inside, host, d, ex)] == [inside, host, d, ex]
    if backend == "core":
        assert host["target_state"]["handler"] == "default"
        return
    assert {"si_pid", "target_state.unkillable"} <= set(inside["derived"]) & set(host["derived"])
    # The dispositions are read when the record is handled: by then the init may be dead.
    for s in (inside, host):
        read_from_proc(s, "target_state.handler", "default")
        read_from_proc(s, "target_state.blocked", False)


def test_sigkill_and_exit_name_who_had_work_to_do(
    tracer: StartTracer, agents: Agents, backend: str
) -> None:
    """A SIGKILLed process's handlers (SigCgt) when it was killed and at its exit: one with
    a SIGTERM handler (python's SIGINT too), one with none at all ([], not null)."""
    trapper, plain = agents("TERM=handler"), agents("INT=default")
    t = start(tracer, backend, ["KILL"], [trapper.pid, plain.pid])
    for a in (trapper, plain):
        os.kill(a.pid, signal.SIGKILL)
        assert a.wait() == -signal.SIGKILL
    records = t.stop()  # type: ignore[attr-defined]

    for a, caught in ((trapper, ["SIGINT", "SIGTERM"]), (plain, [])):
        ex = one(exits(records, pid=a.pid), "exit")
        assert ex["exit_code"] == 137 and list(ex).index("caught") == list(ex).index("oom") + 1
        if backend == "core":  # read in the kernel, at the SIGKILL and at the exit
            s = one(signals(records, target_pid=a.pid), "SIGKILL")
            assert s["target_state"]["caught"] == caught and "derived" not in s
            assert ex["caught"] == caught and "derived" not in ex
            continue
        # The last SigCgt read while it lived: --pid's processes are read when tracing starts.
        assert (ex["caught"], ex["derived"]) == (caught, ["caught"])
        if backend == "ptrace":  # no SIGKILL stop
            assert signals(records) == []
            assert cannot_see(records, backend, "target_state.caught: no SIGKILL is seen")
            continue
        # Read from /proc when the record was handled: usually a zombie by then (null).
        s = one(signals(records, target_pid=a.pid), "SIGKILL")
        read_from_proc(s, "target_state.caught", caught)
        assert cannot_see(records, backend, "target_state.caught of a SIGKILL")


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


def _auto_sees_term(
    tracer: StartTracer, agents: Agents, sys_root: Path
) -> tuple[list[Record], int]:
    """The automatic backend choice traces a SIGTERM to an agent that handles it:
    (records, the agent's pid)."""
    a = agents("TERM=handler")
    t = _auto(tracer, [a.pid], sys_root)
    os.kill(a.pid, signal.SIGTERM)
    a.expect("got 15")
    return t.stop(), a.pid  # type: ignore[attr-defined]


def test_auto_without_btf_chooses_tracefs(
    tracer: StartTracer, agents: Agents, sys_without_btf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "bcc" in BACKENDS:
        monkeypatch.setenv("SIGTRACE_DENY_BPF", "1")  # BCC needs no BTF: refuse bpf() too
    records, pid = _auto_sees_term(tracer, agents, sys_without_btf)
    first = started(records, "tracefs")
    assert "skipped core (" in first["why"]
    assert one(signals(records, target_pid=pid))["outcome"] == "delivered"


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
    records, pid = _auto_sees_term(tracer, agents, sys_without_btf)
    first = started(records, "ptrace")
    assert "tracefs (tracefs: no tracefs under" in first["why"]
    assert one(delivers(records, pid=pid))["action"] == "handler"


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
