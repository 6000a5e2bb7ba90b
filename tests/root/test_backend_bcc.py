"""The BCC backend on the real kernel: the same records as CO-RE, with what came from /proc
in `derived` and what it cannot see in the start record's `cannot_see`.

As root these fail (never skip) when BCC cannot compile here: scripts/setup installs
python3-bpfcc and links kernel headers, so a missing piece is a broken machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sigtrace.backends.bcc import BccBackend, locate_bcc
from sigtrace.config import TraceConfig
from tests.root.helpers import ME, NOBODY, pidns_init
from tests.tracing import REPO, delivers, exits, one, signals

if TYPE_CHECKING:
    from tests.root.helpers import Agents, StartTracer
    from tests.tracing import Record, Tracer

BCC = ["--backend", "bcc", "--syscalls"]  # fan-outs, failed calls: all it can see


def bcc(tracer: StartTracer, sigs: list[str], pids: list[int] | None = None) -> Tracer:
    return tracer(signals=sigs, pids=pids or [], extra=BCC)


def started(records: list[Record]) -> Record:
    first = records[0]
    assert first["type"] == "start" and first["backend"] == "bcc", first
    return first


def test_every_probe_passes_as_root() -> None:
    failed = [p for p in BccBackend.probe(TraceConfig()) if not p[1]]
    assert failed == [], "scripts/setup should have made BCC usable here"


def test_pid_namespace_init_ignores_sigterm_from_the_host(
    tracer: StartTracer, agents: Agents
) -> None:
    init = agents(pidns=True)
    t = bcc(tracer, ["TERM"], [init.pid])
    os.kill(init.pid, signal.SIGTERM)
    assert init.alive()
    records = t.stop()

    s = one(signals(records, target_pid=init.pid), "signal to the init")
    assert (s["outcome"], s["reason"]) == ("ignored", "pid1_no_handler")
    assert s["result"] == "ignored"  # the tracepoint's own verdict
    assert s["target"]["ns_pid"] == 1 and s["target"]["pid1"] is True
    assert s["target_state"]["unkillable"] is True and s["target_state"]["handler"] == "default"
    assert s["sender"]["pid"] == ME and s["syscall"] == "kill" and s["scope"] == "process"
    assert s["si_pid"] == 0  # sent from an ancestor namespace
    # What the kernel side could not read came from /proc, and says so; the verdict did not.
    assert {
        "target.pid",
        "target.ns_pid",
        "target_state.unkillable",
        "target_state.handler",
        "target_state.blocked",
        "si_pid",
    } <= set(s["derived"])
    assert not {"result", "outcome", "signal", "sender.pid", "sender.uid"} & set(s["derived"])
    assert delivers(records, pid=init.pid) == []


def test_handler_is_delivered_and_runs(tracer: StartTracer, agents: Agents) -> None:
    a = agents("TERM=handler")
    t = bcc(tracer, ["TERM"], [a.pid])
    os.kill(a.pid, signal.SIGTERM)
    a.expect("got 15")
    records = t.stop()

    s = one(signals(records, target_pid=a.pid), "signal")
    assert (s["outcome"], s["reason"]) == ("delivered", None)
    assert s["target_state"]["handler"] == "handler" and "target_state.handler" in s["derived"]
    assert s["code"] == "SI_USER" and s["si_pid"] == ME and s["sender"]["uid"] == 0
    d = one(delivers(records, pid=a.pid), "deliver")
    assert (d["action"], d["signal"], d["reported_as"], d["code"]) == (
        "handler",
        "SIGTERM",
        None,
        "SI_USER",
    )
    assert d["target"]["tid"] == a.pid and d["target"]["ns_pid"] == a.pid
    assert d["derived"] == ["target.ns_pid"]  # the action came from the kernel's sa_handler
    assert records.index(s) < records.index(d)


def test_sig_ign_is_ignored(tracer: StartTracer, agents: Agents) -> None:
    a = agents("TERM=ignore")
    t = bcc(tracer, ["TERM"], [a.pid])
    os.kill(a.pid, signal.SIGTERM)
    assert a.alive()
    records = t.stop()

    s = one(signals(records, target_pid=a.pid), "signal")
    assert (s["outcome"], s["reason"], s["result"]) == ("ignored", "sig_ign", "ignored")
    assert s["target_state"]["handler"] == "ignore"
    assert delivers(records, pid=a.pid) == []


def test_blocked_is_pending_from_sigblk(tracer: StartTracer, agents: Agents) -> None:
    a = agents("TERM=block")
    t = bcc(tracer, ["TERM"], [a.pid])
    os.kill(a.pid, signal.SIGTERM)
    a.run("pending", "pending [15]")
    records = t.stop()

    s = one(signals(records, target_pid=a.pid), "signal")
    assert (s["outcome"], s["reason"]) == ("pending", "blocked")
    assert s["target_state"]["blocked"] is True and "target_state.blocked" in s["derived"]


def test_kill_of_a_process_group_is_one_fanout_of_three(
    tracer: StartTracer, agents: Agents
) -> None:
    leader = agents("TERM=handler", process_group=0)
    members = [leader] + [agents("TERM=handler", process_group=leader.pid) for _ in range(2)]
    pids = sorted(m.pid for m in members)
    t = bcc(tracer, ["TERM"], pids)
    os.kill(-leader.pid, signal.SIGTERM)
    for m in members:
        m.expect("got 15")
    records = t.stop()

    sigs = signals(records, signo=15)
    assert sorted(s["target"]["pid"] for s in sigs) == pids
    fanout = sigs[0]["fanout"]
    assert fanout == {"id": fanout["id"], "count": 3, "requested": -leader.pid}
    assert all(s["fanout"] == fanout and s["scope"] == "pgrp" for s in sigs)
    assert all(s["syscall"] == "kill" and s["sender"]["pid"] == ME for s in sigs)
    assert len(delivers(records, signal="SIGTERM")) == 3


def test_kill_without_permission_is_one_failed_record(tracer: StartTracer, agents: Agents) -> None:
    a = agents("TERM=handler")
    t = bcc(tracer, ["TERM"], [a.pid])
    r = subprocess.run(
        [*NOBODY, "kill", "-TERM", str(a.pid)], capture_output=True, timeout=10, check=False
    )
    assert r.returncode != 0, r  # kill(1) reports the EPERM
    assert a.alive()
    records = t.stop()

    s = one(signals(records), "signal")
    assert (s["signal"], s["outcome"], s["reason"]) == ("SIGTERM", "failed", "EPERM")
    assert s["sender"]["uid"] == 65534 and s["sender"]["comm"] == "kill"
    assert s["target"]["pid"] == a.pid and s["syscall"] == "kill"
    assert s["result"] is None and s["target_state"] is None
    assert delivers(records) == []


def test_23_sigusr1_are_counted_exactly(tracer: StartTracer, agents: Agents) -> None:
    n = 23
    a = agents("USR1=handler")
    t = bcc(tracer, ["USR1"], [a.pid])
    for _ in range(n):
        os.kill(a.pid, signal.SIGUSR1)
        a.expect("got 10")
    records = t.stop()

    sigs = signals(records, target_pid=a.pid, signo=signal.SIGUSR1)
    assert len(sigs) == n
    assert all(s["outcome"] == "delivered" for s in sigs)
    assert len(delivers(records, pid=a.pid, signal="SIGUSR1")) == n
    assert records[-1]["records"] == {"signal": n, "deliver": n}
    assert records[-1]["lost"] == 0


def test_default_sigterm_exits_143_through_the_connector(
    tracer: StartTracer, agents: Agents
) -> None:
    a = agents()
    t = bcc(tracer, ["TERM"], [a.pid])
    os.kill(a.pid, signal.SIGTERM)
    assert a.wait() == -signal.SIGTERM
    records = t.stop()

    d = one(delivers(records, pid=a.pid), "deliver of the default SIGTERM")
    # get_signal() reported SIGKILL; the real signal is inferred, and marked as such
    assert (d["signal"], d["action"], d["reported_as"]) == (
        "SIGTERM",
        "default_terminate",
        "SIGKILL",
    )
    assert "signal" in d["derived"]
    ex = one(exits(records, pid=a.pid), "exit")
    assert (ex["exit_code"], ex["signal"]) == (143, "SIGTERM")


def test_namespace_teardown_sigkills_are_scoped(tracer: StartTracer) -> None:
    with pidns_init("sleep 600 & sleep 600 & wait", 2) as (init, sh, sleeps):
        sleeps.sort()
        t = bcc(tracer, ["KILL"], [sh, *sleeps])
        os.kill(sh, signal.SIGKILL)
        init.wait(10)
        records = t.stop()

    host = one(signals(records, target_pid=sh), "the host's SIGKILL")
    assert (host["outcome"], host["scope"]) == ("delivered", "process")
    torn = signals(records, sender_pid=sh)
    assert sorted(s["target"]["pid"] for s in torn) == sleeps
    for s in torn:
        assert (s["scope"], s["code"], s["outcome"]) == ("pidns_teardown", "SI_KERNEL", "delivered")
        assert "scope" in s["derived"]  # the sender's ns pid 1 came from /proc


def test_start_record_names_what_bcc_cannot_see(tracer: StartTracer, agents: Agents) -> None:
    a = agents()
    t = bcc(tracer, ["TERM"], [a.pid])
    first = started(t.stop())
    cannot = "\n".join(first["cannot_see"])
    assert "read from /proc when the record is handled" in cannot
    assert "target_state.waiting" in cannot
    assert "the target's needs its task_struct" in cannot  # cgroups: sender only in-kernel
    assert "--save-raw" in cannot
    assert "--pid: a thread started later" in cannot
    assert "exit codes" not in cannot  # the connector works here


def test_compiles_and_stops_within_seconds(tracer: StartTracer) -> None:
    """Compiling is BCC's price (~0.4 s here); detaching 16 tracepoints takes ~0.6 s."""
    t0 = time.monotonic()
    t = bcc(tracer, ["TERM"])
    startup = time.monotonic() - t0
    t0 = time.monotonic()
    t.stop()
    stop = time.monotonic() - t0
    print(f"bcc: start record after {startup:.2f} s, stopped in {stop:.2f} s")
    assert startup < 5.0 and stop < 3.0


# --- finding BCC's Python module -------------------------------------------------------------


def _run(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*args, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        check=False,
    )


def test_a_python_without_system_site_packages_finds_the_distro_module() -> None:
    # -S: no site-packages at all, as in a venv made from another Python of the same version
    r = _run(
        "import sys; from sigtrace.backends.bcc import load_bcc, DIST_PACKAGES\n"
        "assert DIST_PACKAGES not in sys.path\n"
        "m = load_bcc()\n"
        "assert DIST_PACKAGES not in sys.path, 'left on sys.path'\n"
        "print(m.__file__, hasattr(m, 'BPF'))",
        "/usr/bin/python3",
        "-S",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "/usr/lib/python3/dist-packages/bcc/__init__.py True"


def test_an_unrelated_bcc_module_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bcc").mkdir()
    (tmp_path / "bcc" / "__init__.py").write_text("")  # PyPI's "bcc" is something else
    r = _run(
        "from sigtrace.backends.bcc import locate_bcc; print(locate_bcc())",
        sys.executable,
        env={"PYTHONPATH": f"{tmp_path}:{REPO}"},
    )
    assert r.returncode == 0, r.stderr
    assert "(False," in r.stdout and "not BCC's" in r.stdout and "python3-bpfcc" in r.stdout
    assert locate_bcc()[0] is True  # this interpreter sees the real one


def test_a_python_of_another_version_is_told_which_to_use(tmp_path: Path) -> None:
    fake = tmp_path / "python3"
    fake.symlink_to("python3.99")  # python3-bpfcc installed for a Python this is not
    r = _run(
        "import sigtrace.backends.bcc as b\n"
        f"b.SYSTEM_PYTHON = {str(fake)!r}\n"
        "print(b.locate_bcc())",
        "/usr/bin/python3",
        "-S",
    )
    assert r.returncode == 0, r.stderr
    assert "(False," in r.stdout and "Python 3.99, this is 3." in r.stdout
