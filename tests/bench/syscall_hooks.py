#!/usr/bin/env python3
"""What each way of hooking the kill-family syscalls costs the rest of the host: why
`--syscalls` is opt-in. Not a test; run as root: .venv/bin/python tests/bench/syscall_hooks.py
[--rounds N]. Informational: exit code 0 whatever the numbers are.

The working tree's sigtrace (CO-RE backend, writing to a file on tmpfs) in three modes:
  raw sys_exit        --syscalls: the raw tracepoint, a BPF run on every syscall's exit
                      (the kill family's own read from it, no sys_enter hook on 5.15+)
  classic syscalls:*  --syscalls as on a kernel without a syscall table for sigtrace: the
                      twelve syscalls:sys_{enter,exit}_<kill family> tracepoints
  no syscall hook     the default: each signal's call read from its sender's registers
For each, interleaved, N rounds: a getppid() loop (tests/bench/storm.c -g, CPU 0) for 1 s
untraced, traced, untraced again; traced calls/s as a share of the neighbours' mean (median,
then lowest and highest round); and SIGTERM -> exit, which is mostly detaching (median).
Any syscall tracepoint, raw or classic, sets the syscall-work flag on every task: every
syscall of the host takes the slow entry/exit path while one is attached.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tracers import HERE, VENV_PYTHON, snapshot

# Run as a script: no syscall table, so CO-RE falls back to the classic tracepoints.
CLASSIC = """
import sys
import sigtrace.syscalls
sigtrace.syscalls.table = lambda: None
from sigtrace.cli import main
sys.argv[0] = "sigtrace"
main()
"""


def getppid_rate(storm: Path) -> float:
    out = subprocess.run(
        ["taskset", "-c", "0", str(storm), "-g", "1"], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)["rate"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("syscall_hooks: run as root")
    tmp = Path(tempfile.mkdtemp(prefix="sigtrace-hooks-", dir="/dev/shm"))
    try:
        measure(tmp, opts.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(tmp: Path, rounds: int) -> None:
    storm = tmp / "storm"
    subprocess.run(["gcc", "-O2", "-o", str(storm), str(HERE / "storm.c")], check=True)
    env = {**os.environ, "PYTHONPATH": str(snapshot(tmp / "tree"))}
    (tmp / "classic.py").write_text(CLASSIC)
    out = tmp / "out.jsonl"
    tail = ["--format", "jsonl", "--output", str(out)]
    py = str(VENV_PYTHON)
    modes = {
        "raw sys_exit (--syscalls)": [py, "-m", "sigtrace", *tail, "--syscalls"],
        "classic syscalls:* (--syscalls, no table)": [py, tmp / "classic.py", *tail, "--syscalls"],
        "no syscall hook (the default)": [py, "-m", "sigtrace", *tail],
    }
    ratios: dict[str, list[float]] = {m: [] for m in modes}
    stops: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode, argv in modes.items():
            before = getppid_rate(storm)
            out.unlink(missing_ok=True)
            p = subprocess.Popen(
                ["taskset", "-c", "1", *map(str, argv)],
                env=env,
                cwd=tmp,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                while not (out.exists() and b'"start"' in out.read_bytes()[:4096]):
                    if p.poll() is not None:
                        raise SystemExit(f"syscall_hooks: {mode}: sigtrace exited {p.returncode}")
                    time.sleep(0.01)
                traced = getppid_rate(storm)
                t0 = time.monotonic()
                p.send_signal(signal.SIGTERM)
                p.wait(30)
                stops[mode].append(time.monotonic() - t0)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            after = getppid_rate(storm)
            ratios[mode].append(traced / ((before + after) / 2))
            print(f"[hooks] round {r}: {mode}: {ratios[mode][-1]:.0%}", file=sys.stderr)
    print("| mechanism | getppid() calls/s vs untraced | SIGTERM -> exit |")
    print("|---|---|---|")
    for m in modes:
        xs = ratios[m]
        spread = f"{min(xs):.0%}-{max(xs):.0%}"
        stop = statistics.median(stops[m])
        print(f"| {m} | {statistics.median(xs):.0%} ({spread}) | {stop:.2f} s |")
    print(
        f"\n{rounds} rounds, interleaved; load average at the end {os.getloadavg()[0]:.2f}"
        f" on {os.cpu_count()} CPUs."
    )


if __name__ == "__main__":
    main()
