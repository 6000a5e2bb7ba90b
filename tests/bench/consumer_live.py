#!/usr/bin/env python3
"""The CO-RE consumer on the real kernel, apart from other work on the host (a helper; not a
test): `sigtrace --signal all --pid STORM` while tests/bench/storm.c runs, paced or flat out.

The pid filter keeps other processes' signals (another tracer's benchmark storm on a shared
machine) out of the ring buffer, so what is measured is this storm's records alone. Prints
records written, lost (the stop record's count), records/s from the storm's start until
sigtrace stopped using CPU, CPU µs per record, and how long sigtrace waited for its CPU on
the run queue (/proc/PID/schedstat): a consumer that waited seconds was starved by other
work, not slow.

usage (root): .venv/bin/python tests/bench/consumer_live.py [--rate 75000] [--seconds 60]
[--reps 1] [--tree DIR] [-- sigtrace options...]   (--rate 0: flat out)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchrun import build_storm
from procstat import busy_until, cpu_ticks
from tracers import REPO, VENV_PYTHON


def _pin(cpu: int) -> Callable[[], None]:
    return lambda: os.sched_setaffinity(0, {cpu})


def _run_queue_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1])


def _last_line(path: Path) -> dict:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 65536))
        return json.loads(f.read().rstrip().rsplit(b"\n", 1)[-1])


def once(storm_bin: Path, tmp: Path, opts: argparse.Namespace) -> str:
    out = tmp / "out.jsonl"
    storm = subprocess.Popen(
        [str(storm_bin), "-w", str(opts.seconds), str(opts.rate)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        preexec_fn=_pin(0),
    )
    argv = [str(VENV_PYTHON), "-m", "sigtrace", "--backend", "core", "--signal", "all"]
    argv += ["--pid", str(storm.pid), "--format", "jsonl", "--output", str(out), *opts.extra]
    tracer = subprocess.Popen(
        argv,
        env={**os.environ, "PYTHONPATH": str(opts.tree)},
        cwd=tmp,  # not the repository: `python -m` would import its sigtrace first
        stderr=subprocess.DEVNULL,
        preexec_fn=_pin(1),
        start_new_session=True,
    )
    try:
        while not (out.exists() and b'"type":"start"' in out.read_bytes()[:65536]):
            if tracer.poll() is not None:
                raise SystemExit(f"consumer_live: sigtrace exited {tracer.returncode}")
            time.sleep(0.01)
        c0, w0, t0 = cpu_ticks(tracer.pid), _run_queue_ns(tracer.pid), time.monotonic()
        assert storm.stdin is not None and storm.stdout is not None
        storm.stdin.write(b"g")
        storm.stdin.close()
        st = json.loads(storm.stdout.read())
        storm.wait()
        elapsed = busy_until(tracer.pid, 120) - t0
        cpu = (cpu_ticks(tracer.pid) - c0) / os.sysconf("SC_CLK_TCK")
        waited = (_run_queue_ns(tracer.pid) - w0) / 1e9
        tracer.send_signal(signal.SIGTERM)
        tracer.wait(60)
        stop = _last_line(out)
    finally:
        for p in (storm, tracer):
            if p.poll() is None:
                p.kill()
                p.wait()
        out.unlink(missing_ok=True)
    records = sum(v for k, v in stop["records"].items() if k != "lost")
    return (
        f"{st['kills']:,} kills at {st['rate']:,.0f}/s -> {records:,} records, lost"
        f" {stop['lost']:,}; {records / elapsed:,.0f} records/s over {elapsed:.1f} s; CPU"
        f" {cpu / max(1, records) * 1e6:.2f} µs/record; waited for its CPU {waited:.2f} s;"
        f" load {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--rate", type=float, default=75_000, help="kills/s (2 records each); 0: flat out"
    )
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--tree", type=Path, default=REPO, help="the sigtrace to run (a checkout)")
    ap.add_argument("extra", nargs="*", help="more sigtrace options (after --)")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("consumer_live: needs root (BPF)")
    tmp = Path(tempfile.mkdtemp(prefix="consumer-live-", dir="/dev/shm"))
    try:
        storm_bin = build_storm(tmp)
        for _ in range(opts.reps):
            print(once(storm_bin, tmp, opts), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
