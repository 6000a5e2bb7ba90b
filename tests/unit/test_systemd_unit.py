"""packaging/systemd/sigtrace.service: systemd's own checker, its security score, and (as root)
the daemon run with exactly the unit's user, capabilities, NoNewPrivileges and W^X memory."""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "packaging" / "systemd" / "sigtrace.service"
EXEC = "/usr/local/bin/sigtrace"
NEEDED_CAPS = {"CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"}
MAX_EXPOSURE = 3.0  # systemd-analyze security: "OK" is below 4.0; the unit scores 2.6


def directives(text: str) -> dict[str, list[str]]:
    """Key -> values (in order; systemd keys repeat), ignoring comments and sections."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def one(d: dict[str, list[str]], key: str) -> str:
    assert len(d.get(key, [])) == 1, f"{key}: {d.get(key)}"
    return d[key][0]


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:  # not a skip: CI installs systemd (scripts/setup)
        pytest.fail("systemd-analyze is missing: apt-get install systemd", pytrace=False)
    return path


@pytest.fixture
def checkable_unit(tmp_path: Path) -> Path:
    """The unit with its ExecStart binary replaced by an executable stub: `verify` checks that
    the binary exists, and a test machine need not have sigtrace in /usr/local/bin."""
    stub = tmp_path / "sigtrace"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = UNIT.read_text()
    assert EXEC in text
    unit = tmp_path / "sigtrace.service"
    unit.write_text(text.replace(EXEC, str(stub)))
    return unit


def test_systemd_analyze_verify_is_silent(checkable_unit: Path) -> None:
    # Unknown keys and unparsable values are warnings with exit status 0: any output fails.
    r = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(checkable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r


def test_systemd_analyze_security_exposure(checkable_unit: Path) -> None:
    r = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(checkable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, r.stdout


def test_unit_settings() -> None:
    d = directives(UNIT.read_text())
    argv = one(d, "ExecStart").split()
    assert argv[:2] == [EXEC, "daemon"]
    assert argv[argv.index("--output") + 1].startswith("/var/log/" + one(d, "LogsDirectory") + "/")
    assert one(d, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(d, "TimeoutStopSec") == "5"
    assert one(d, "Restart") == "on-failure"
    assert set(one(d, "CapabilityBoundingSet").split()) == NEEDED_CAPS
    assert set(one(d, "AmbientCapabilities").split()) == NEEDED_CAPS
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelModules"):
        assert one(d, key) == "yes", key
    assert one(d, "ProtectControlGroups") == "yes"
    assert one(d, "MemoryDenyWriteExecute") == "yes"
    assert one(d, "ProtectSystem") == "strict"
    assert set(one(d, "RestrictAddressFamilies").split()) == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
    }
    assert {"bpf", "perf_event_open"} <= set(one(d, "SystemCallFilter").split())
    # sigtrace reads every process's /proc entries: these would hide them.
    assert "ProtectProc" not in d and "ProcSubset" not in d


# --- As root: the unit's identity and limits, applied by hand (systemd is not PID 1 here).

PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
# Runs in the child after setpriv: W^X memory the way systemd >= 255 applies
# MemoryDenyWriteExecute (older ones use a seccomp filter with the same effect on libffi:
# its W+X mmap fails and it falls back to a double-mapped memfd), then execs sigtrace.
MDWE_EXEC = f"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:
    sys.exit("PR_SET_MDWE failed: errno %d" % ctypes.get_errno())
os.execv(sys.executable, [sys.executable, "-m", "sigtrace", *sys.argv[1:]])
"""


def _mdwe_supported() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(66, 0, 0, 0, 0) >= 0  # PR_GET_MDWE: Linux >= 6.3


def _read_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _wait_for(
    path: Path, pred: Callable[[dict], bool], proc: subprocess.Popen, timeout: float = 15.0
) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        recs = _read_records(path)
        if any(pred(r) for r in recs):
            return recs
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"sigtrace exited {proc.returncode}: {err} {recs}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no matching record in {path} after {timeout}s: {recs}")
        time.sleep(0.1)


@pytest.mark.root
def test_daemon_runs_with_the_units_user_and_capabilities(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (BPF)")
    if not _mdwe_supported():
        pytest.fail("PR_SET_MDWE needs Linux >= 6.3; this test checks W^X with it")
    d = directives(UNIT.read_text())
    caps = ",".join("+" + c.removeprefix("CAP_").lower() for c in sorted(NEEDED_CAPS))
    argv = one(d, "ExecStart").split()[1:]
    logs = tmp_path / "logs"  # LogsDirectory: owned by the service's user
    logs.mkdir()
    os.chown(logs, 65534, 65534)
    tmp_path.chmod(0o755)
    out = logs / "sigtrace.jsonl"
    argv[argv.index("--output") + 1] = str(out)
    cmd = [
        "setpriv",
        "--reuid=65534",  # nobody: what DynamicUser gives is as unprivileged
        "--regid=65534",
        "--clear-groups",
        f"--inh-caps=-all,{caps}",
        f"--ambient-caps=-all,{caps}",
        f"--bounding-set=-all,{caps}",
        "--no-new-privs",
        sys.executable,
        "-c",
        MDWE_EXEC,
        *argv,
    ]
    daemon = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    victim = None
    try:
        _wait_for(out, lambda r: r["type"] == "start", daemon)
        victim = subprocess.Popen(["sleep", "60"])
        time.sleep(0.2)
        victim.send_signal(signal.SIGTERM)
        victim.wait(5)
        recs = _wait_for(
            out, lambda r: r["type"] == "signal" and r["target"].get("pid") == victim.pid, daemon
        )
        sig = next(r for r in recs if r["type"] == "signal" and r["target"]["pid"] == victim.pid)
        assert sig["signal"] == "SIGTERM" and sig["outcome"] == "delivered"
        # ExecReload: SIGHUP reopens the file (logrotate moved the old one away).
        out.rename(logs / "sigtrace.jsonl.1")
        daemon.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert out.exists(), "SIGHUP did not reopen the output file"
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(5)  # TimeoutStopSec=5
    finally:
        for p in (daemon, victim):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    stderr = daemon.stderr.read() if daemon.stderr else ""
    assert daemon.returncode == 0, stderr
    assert out.stat().st_uid == 65534
    assert _read_records(out)[-1]["type"] == "stop", stderr
