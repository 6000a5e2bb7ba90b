#!/usr/bin/env python3
"""What an idle `sigtrace daemon` costs a node: CPU and wakeups while nothing is traced,
beside sigsnoop and bpftrace, all in the same window.

Not a test (pytest does not collect it); run as root:
  .venv/bin/python tests/bench/daemon_idle.py [--seconds S] [--ref COMMIT]... [--no-metrics]
Informational: exit code 0 whatever the numbers are.

Every tracer runs at once, host-wide, started as tests/bench/daemon_churn.py starts them
(sigtrace daemon: JSONL to a file on tmpfs, --metrics on 127.0.0.1 unless --no-metrics): the
working tree's sigtrace, and one more per --ref (say the commit before a change: before and
after in the same window). Once all are live and settled, one window of --seconds (default
60) is measured for each, from /proc/<pid>:
  CPU        utime+stime over the window as % of one CPU (one tick: 10 ms; at 60 s a tick
             is 0.017 %), and the threads' schedstat run time (ns), finer.
  wakeups/s  voluntary context switches of all its threads (/proc/<pid>/task/*/status)
             over the window, per second: how often it goes to sleep, i.e. was woken.
  lines      what it wrote meanwhile: other work on the host that sends signals (or
             containers stopping) makes "idle" less idle.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mdtable
from live import Outcome, Tracer, daemon_specs
from procstat import cpu_pct, cpu_pct_ns, sample, switches
from tracers import sigtrace_command, snapshot

HEAD = ["tracer", "idle CPU (ticks)", "idle CPU (run time)", "wakeups/s", "lines written"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="the idle window (default 60)")
    ap.add_argument("--ref", action="append", default=[], help="also this commit's sigtrace")
    ap.add_argument("--no-metrics", dest="metrics", action="store_false", help="no --metrics")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after start-up")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("daemon_idle: run as root")
    tmp = Path(tempfile.mkdtemp(prefix="sigtrace-idle-", dir="/dev/shm"))
    tracers: list[Tracer[Outcome]] = []
    try:
        base = daemon_specs(snapshot(tmp / "tree"), opts.metrics)
        for i, ref in enumerate(opts.ref):  # the same `python -m sigtrace`, another PYTHONPATH
            _, env = sigtrace_command(snapshot(tmp / f"ref{i}", ref))
            base.insert(i + 1, dataclasses.replace(base[0], name=f"at {ref}", env=env))
        base[0] = dataclasses.replace(base[0], name="working tree")
        tracers = [Tracer(s, tmp, Outcome(s.name)) for s in base if not s.unavailable]
        for t in tracers:
            t.start(tmp)
        for t in tracers:
            t.wait_live()
        time.sleep(opts.settle)
        load = os.getloadavg()[0]
        first = {t: (sample(t.row.pid), switches(t.row.pid), t.size()) for t in tracers}
        time.sleep(opts.seconds)
        rows = []
        for t in tracers:
            a, sw, size = first[t]
            b = sample(t.row.pid)
            if a is None or b is None:
                rows.append(mdtable.partial([t.spec.name, "gone"], len(HEAD)))
                continue
            wakes = (switches(t.row.pid) - sw) / (b.t - a.t)
            lines = t.out.read_bytes()[size:].count(b"\n") if t.out.exists() else 0
            rows.append(
                mdtable.row(
                    [
                        t.spec.name,
                        f"{cpu_pct(a, b):.3f}%",
                        f"{cpu_pct_ns(a, b):.3f}%",
                        f"{wakes:.1f}",
                        str(lines),
                    ]
                )
            )
    finally:
        for t in tracers:
            t.stop()
        for t in tracers:
            t.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join([*mdtable.head(HEAD), *rows]))
    metrics = "with --metrics" if opts.metrics else "without --metrics"
    print(
        f"\nOne {opts.seconds:.0f} s window, all at once; sigtrace daemon {metrics}."
        f" Load average at its start: {load:.2f} on {os.cpu_count()} CPUs."
    )


if __name__ == "__main__":
    main()
