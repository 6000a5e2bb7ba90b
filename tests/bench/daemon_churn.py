#!/usr/bin/env python3
"""sigtrace daemon under container churn: idle CPU and memory before and after N container
starts and stops, side by side with sigsnoop and a bpftrace one-liner traced the same way.

Not a test (pytest does not collect it); run as root with Docker up (scripts/services):
  .venv/bin/python tests/bench/daemon_churn.py [--quick] [--containers N] [--json FILE]
Informational: exit code 0 whatever the numbers are.

All three tracers run at once, host-wide, through the same churn: `sigtrace daemon` (JSONL to
a file on tmpfs, Prometheus metrics on 127.0.0.1 unless --no-metrics), `sigsnoop`
(libbpf-tools, every signal: its -s takes one signal only) and `bpftrace` on
tracepoint:signal:signal_generate with sigtrace's five default signals (HUP INT QUIT KILL
TERM) in a predicate. The churn is N real containers of the local test images (tests/images,
built if missing, never pulled), named <prefix>-<run>-NNNN (--prefix, default churn): `docker
run -d`, wait until PID 1 has set up its SIGTERM disposition, `docker stop -t GRACE` (SIGTERM
to PID 1; SIGKILL after GRACE s if it is still there), `docker rm`; a few at a time
(--parallel). The images rotate: st-execform (graceful), st-shellform (ignored_by_pid1),
st-sigign (ignored_sig_ign), st-noforward (not_forwarded), so every stop has a known expected
verdict. --jobs N adds N containers that end on their own among them (st-busybox `sh -c 'sleep
60 & sleep 0.3; exit 0'`: PID 1 exits 0 and the pid namespace teardown SIGKILLs the sleep, a
traced signal inside the container; no verdict is due), as a node's batch jobs do.

What each column measures (per tracer process, from /proc/<pid>):
  idle CPU before  utime+stime (+cutime+cstime) from /proc/<pid>/stat over a window with no
                   churn (20 s, 5 s with --quick), as % of one CPU, after start-up settled.
                   Resolution: one clock tick (10 ms) per window, i.e. 0.05 % at 20 s. Other
                   work on the host still sends signals meanwhile (see the notes below).
  idle CPU after   the same window after the churn, once every tracer's CPU time stopped
                   growing and sigtrace's last verdicts were due.
  CPU in churn     CPU seconds used from the first container start to that point.
  RSS before/after VmRSS from /proc/<pid>/status at the end of each idle window.
  VmHWM            peak RSS over the whole run, read after the churn (/proc/<pid>/status).
  fds, threads     open fds (/proc/<pid>/fd) and Threads, at the end of each idle window:
                   before -> after, to show what the churn leaves behind.
  records          what it wrote: sigtrace JSONL records (the stop record's counts), the
                   anchors' text lines (one per generated signal), all run long, host-wide.
  our stops seen   how many of this run's stopped containers' PID 1s (sigtrace: by container
                   name; anchors: by host pid from docker inspect) got a SIGTERM in its
                   output (the total of such lines is in the notes).
  lost             what it reported lost (sigtrace: `lost` records; anchors: "lost N events").
  exit             exit code and seconds from the stop signal (sigtrace SIGTERM, the anchors
                   SIGINT, their clean exit) to the process being gone.
Ratios (nx) are against sigsnoop's value in the same column, same run; the idle CPU ones
use the threads' run time from /proc/<pid>/task/*/schedstat (ns), as one tick per window is
too coarse for them (sigsnoop often uses no tick at all in a window).

Below the table: for how many of the N containers the daemon told a story (a complete
`verdict` record), how many verdicts were the expected one, PID 1 exit records, what its
metrics endpoint exported, and how many lines each tracer wrote during the idle windows: other
work on the host that sends signals makes "idle" less idle (a warning says when it was busy).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchrun import closing_lines, exit_on_signals, hold_signals, run_info, which_sigtrace
from churnlib.churn import LABEL, Churn, log
from churnlib.measure import run
from churnlib.report import Row, notes, render
from dockerctl import DOCKER, docker, remove_labelled
from live import Tracer, daemon_specs
from tracers import REPO, snapshot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="50 containers, 5 s idle windows")
    ap.add_argument("--containers", type=int, metavar="N", help="starts and stops (default 500)")
    ap.add_argument(
        "--jobs",
        type=int,
        default=0,
        metavar="N",
        help="also N containers that end on their own, no stop, among the others (default 0)",
    )
    ap.add_argument("--window", type=float, metavar="S", help="idle window (default 20 s)")
    ap.add_argument("--parallel", type=int, default=4, help="containers at a time (default 4)")
    ap.add_argument("--grace", type=int, default=1, help="docker stop -t (default 1)")
    ap.add_argument(
        "--linger", type=float, default=0.3, help="min seconds a container runs (default 0.3)"
    )
    ap.add_argument("--no-metrics", dest="metrics", action="store_false", help="no --metrics")
    ap.add_argument("--json", metavar="FILE", help="also write the raw numbers here")
    ap.add_argument(
        "--installed",
        action="store_true",
        help="run .venv/bin/sigtrace as installed (default: this working tree's sigtrace)",
    )
    ap.add_argument("--ref", metavar="COMMIT", help="this commit's sigtrace (git archive)")
    ap.add_argument("--prefix", default="churn", help="container names start with this")
    opts = ap.parse_args()
    if opts.containers is None:
        opts.containers = 50 if opts.quick else 500
    if opts.window is None:
        opts.window = 5.0 if opts.quick else 20.0
    opts.churn_s, opts.stopped = 0.0, 0

    if os.geteuid() != 0:
        sys.exit("daemon_churn: needs root (BPF)")
    if docker("info", "--format", "{{.ServerVersion}}", timeout=20).returncode != 0:
        sys.exit("daemon_churn: Docker is not answering (start it with scripts/services)")
    sys.path.insert(0, str(REPO))
    from tests.images.build import ensure_images

    ensure_images(DOCKER)
    if n := remove_labelled(LABEL, None, opts.prefix):
        log(f"removed {n} containers left by earlier runs that are gone")

    exit_on_signals()
    load_before = os.getloadavg()[0]
    tag = f"{os.getpid()}-{int(time.time())}"
    what = which_sigtrace(opts.installed, opts.ref)
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    tmp = Path(tempfile.mkdtemp(prefix="sigtrace-churn-", dir=base))
    tracers: list[Tracer[Row]] = []
    churn = Churn(
        tag, opts.containers, opts.jobs, opts.grace, opts.parallel, opts.linger, opts.prefix
    )
    result: dict[str, Any] = {}
    t_start = time.monotonic()
    try:
        path = None if opts.installed else snapshot(tmp / "snapshot", opts.ref)
        tracers = [
            Tracer(s, tmp, Row(s.name, error=s.unavailable), log)
            for s in daemon_specs(path, opts.metrics)
        ]
        result = run(opts, tmp, tracers, churn)
    except KeyboardInterrupt:
        print("daemon_churn: interrupted", file=sys.stderr)
        sys.exit(130)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        print(f"daemon_churn: {e}", file=sys.stderr)
        for t in tracers:
            if t.row.error:
                print(f"  {t.spec.name}: {t.row.error}", file=sys.stderr)
        sys.exit(0)  # informational
    finally:
        hold_signals()
        churn.stop.set()
        for t in tracers:
            t.kill()
        if n := remove_labelled(LABEL, tag):
            log(f"removed {n} containers of this run")
        shutil.rmtree(tmp, ignore_errors=True)
    took = time.monotonic() - t_start
    rows = [t.row for t in tracers]
    stories = result.get("stories")
    metrics = result.get("metrics")
    if opts.json:
        data = {
            **run_info(what, took, opts),
            "tracers": [asdict(r) for r in rows],
            "stories": asdict(stories) if stories else None,
            "metrics": metrics,
            "windows": result.get("windows"),
            "containers": [asdict(c) for c in churn.containers],
        }
        Path(opts.json).write_text(json.dumps(data, indent=2) + "\n")
    print(render(rows, opts))
    print()
    for line in notes(rows, stories, churn, metrics, opts):
        print(line)
    for line in closing_lines(what, took, load_before):
        print(line)


if __name__ == "__main__":
    main()
