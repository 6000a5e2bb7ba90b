"""Least privilege, proven on the real kernel; and a SIGKILLed sigtrace leaves nothing behind.

The DaemonSet runs sigtrace as uid 0 with only the capabilities its manifest adds: with
exactly those (setpriv's bounding set), sigtrace traces a real SIGTERM and reads its target's
cmdline. Each of them is needed: without any one it exits 3 naming the one that is missing.
CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, which it once listed, are not needed to trace: without
them (and everything else but the manifest's) it still traces, as the first test shows.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.tracing import REPO, parse_lines, sigtrace_cmd, wait_for

MANIFEST = REPO / "packaging/kubernetes/sigtrace.yaml"
VICTIM = ("python3", "-c", "import signal, time; signal.signal(15, lambda *_: None); "
          "print('ready', flush=True); time.sleep(60)")  # fmt: skip
CMD_TAIL = "time.sleep(60)"  # the end of the victim's cmdline, read from /proc
NOT_NEEDED = ("SYS_PTRACE", "DAC_READ_SEARCH")  # once listed; the ptrace backend, rootless state


def daemonset_caps() -> list[str]:
    for doc in yaml.safe_load_all(MANIFEST.read_text()):
        if doc and doc.get("kind") == "DaemonSet":
            sc = doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]
            assert sc["capabilities"]["drop"] == ["ALL"] and sc["runAsUser"] == 0
            return list(sc["capabilities"]["add"])
    raise AssertionError("no DaemonSet in the manifest")


def with_caps(caps: list[str], *args: str) -> list[str]:
    bounding = ",".join(["-all", *(f"+{c.lower()}" for c in caps)])
    return ["setpriv", f"--bounding-set={bounding}", "--inh-caps=-all", *sigtrace_cmd(*args)]


def trace_one_sigterm(cmd: list[str], tmp_path: Path) -> dict:
    """Runs `cmd` (a sigtrace), SIGTERMs a sleep, stops it; returns the signal record."""
    out = tmp_path / "out.jsonl"
    with out.open("wb") as o:
        tracer = subprocess.Popen(cmd, stdout=o, stderr=subprocess.PIPE, text=True, cwd=REPO)
    victim = None
    try:
        wait_for(lambda: out.read_text().count("\n") >= 1 or tracer.poll() is not None,
                 what="start record")  # fmt: skip
        assert tracer.poll() is None, tracer.stderr.read() if tracer.stderr else ""
        victim = subprocess.Popen([*VICTIM], stdout=subprocess.PIPE)
        assert victim.stdout is not None and victim.stdout.readline() == b"ready\n"
        victim.send_signal(signal.SIGTERM)  # handled: alive while sigtrace reads its cmdline
        time.sleep(0.5)
        tracer.send_signal(signal.SIGTERM)
        assert tracer.wait(5) == 0
    finally:
        for p in (tracer, victim):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    recs = parse_lines(out.read_text())
    hits = [r for r in recs if r["type"] == "signal" and r["target"]["pid"] == victim.pid]
    assert len(hits) == 1, recs
    return hits[0]


def test_the_daemonsets_capabilities_trace(tmp_path: Path) -> None:
    caps = daemonset_caps()
    assert not set(NOT_NEEDED) & set(caps)  # least privilege: nothing it does not need
    rec = trace_one_sigterm(with_caps(caps, "daemon", "--signal", "TERM"), tmp_path)
    assert rec["signal"] == "SIGTERM" and rec["outcome"] == "delivered"
    assert rec["target"]["cmdline"].endswith(CMD_TAIL)


@pytest.mark.parametrize("dropped", daemonset_caps())
def test_each_capability_dropped(dropped: str, tmp_path: Path) -> None:
    caps = [c for c in daemonset_caps() if c != dropped]
    cmd = with_caps(caps, "daemon", "--signal", "TERM")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False, cwd=REPO)
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sigtrace: no backend can run here: "), lines
    assert f"core (privileges: missing CAP_{dropped} " in lines[0], lines[0]
    assert r.returncode == 3, lines[0]


def _bpf_objects(kind: str) -> list[dict]:
    r = subprocess.run(["bpftool", "-j", kind, "list"], capture_output=True, text=True, check=True)
    return json.loads(r.stdout or "[]")


def _held_by(pid: int) -> dict[str, set[int]]:
    """Ids of the BPF programs and links `pid` holds, from its fds' fdinfo."""
    held: dict[str, set[int]] = {"prog": set(), "link": set()}
    fdinfo = Path(f"/proc/{pid}/fdinfo")
    for f in fdinfo.iterdir():
        for line in f.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key in ("prog_id", "link_id"):
                held[key[:4]].add(int(value))
    return held


def test_sigkill_mid_trace_leaves_no_bpf_program_or_link(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with out.open("wb") as o:
        tracer = subprocess.Popen(
            sigtrace_cmd("--format", "jsonl", "--signal", "all"), stdout=o, cwd=REPO
        )
    try:
        wait_for(lambda: out.read_text().count("\n") >= 1, what="start record")
        held = _held_by(tracer.pid)
        assert held["prog"] and held["link"], held  # what it loaded, by id
    finally:
        tracer.send_signal(signal.SIGKILL)
        tracer.wait()

    # The kernel frees them with the last fd; nothing is pinned, so nothing may remain.
    def gone() -> bool:
        now = {k: {o["id"] for o in _bpf_objects(k)} for k in ("prog", "link")}
        return not (held["prog"] & now["prog"]) and not (held["link"] & now["link"])

    wait_for(gone, what=f"programs {held['prog']} and links {held['link']} freed")


def test_a_killed_tracefs_runs_instance_is_removed_by_the_next_run(tmp_path: Path) -> None:
    instances = Path("/sys/kernel/tracing/instances")
    out = tmp_path / "out.jsonl"
    with out.open("wb") as o:
        first = subprocess.Popen(
            sigtrace_cmd("--format", "jsonl", "--backend", "tracefs"), stdout=o, cwd=REPO
        )
    mine = instances / f"sigtrace-{first.pid}"
    try:
        wait_for(lambda: out.read_text().count("\n") >= 1, what="start record")
        assert mine.is_dir()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert mine.is_dir(), "nothing to clean up: the test would prove nothing"
    # Only instances whose owner is dead go: other runs' (live pids) must stay.
    r = subprocess.run(
        sigtrace_cmd("--format", "jsonl", "--backend", "tracefs", "--duration", "0.5"),
        capture_output=True, text=True, timeout=30, check=False, cwd=REPO,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert not mine.exists()
