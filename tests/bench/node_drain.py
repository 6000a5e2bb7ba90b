#!/usr/bin/env python3
"""A node drain under `sigtrace daemon`: N containers stopped at once, the way `kubectl
drain` hits a node. Does every container get its verdict, how long after its PID 1 exited,
and what does the daemon spend on it?

Not a test (pytest does not collect it); run as root with Docker up (scripts/services):
  .venv/bin/python tests/bench/node_drain.py [--containers N] [--grace S] [--prefix P]
Informational: exit code 0 whatever the numbers are.

N containers (default 100) of the local test images (tests/images, built if missing, never
pulled; --network none: they need none), half st-shellform (PID 1 a shell that drops
SIGTERM: `ignored_by_pid1`, killed after the grace period) and half st-execform (PID 1 traps
it and exits: `graceful`), named <prefix>-<run>-NNN and labelled, are started a few at a
time and each waited for until PID 1 has set its SIGTERM disposition. Then `sigtrace daemon`
(the working tree's, or --ref's; JSONL to a file on tmpfs) starts, and once it is live one
`docker stop -t GRACE` per container is started at the same moment. The output file is
followed meanwhile, each record stamped with its arrival time. The table:
  verdicts     containers with exactly one complete verdict, and how many were the one due
  lost         records the daemon reported lost (`lost` records and the stop record)
  CPU          the daemon's utime+stime from the stops to the last verdict's arrival (and its
               threads' schedstat run time), as seconds and as % of one CPU over that time
  delay        for each container: its verdict's arrival minus its PID 1's exit (the `exit`
               record's time, the kernel's): median and max. A verdict is due SETTLE_S (1.5 s)
               after the exit by design (late records of the teardown); the rest is the cost.
Every container of the run is removed at the end, whatever happened.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dockerctl import Container, docker, inspect_pid, remove_labelled
from live import Outcome, Tracer, daemon_specs
from procstat import CLK_TCK, sample
from tracers import REPO, snapshot

LABEL = "sigtrace.bench.drain"  # value: this run's tag
DUE = {"st-shellform": "ignored_by_pid1", "st-execform": "graceful"}


def log(msg: str) -> None:
    print(f"[drain] {msg}", file=sys.stderr, flush=True)


class Follow(threading.Thread):
    """Reads a growing JSONL file: each record with the wall time it was seen."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.seen: list[tuple[float, dict]] = []
        self.done = threading.Event()

    def run(self) -> None:
        buf, pos = b"", 0
        while not self.done.is_set():
            try:
                with open(self.path, "rb") as f:
                    f.seek(pos)
                    chunk = f.read()
            except OSError:
                chunk = b""
            now = time.time()
            pos += len(chunk)
            buf += chunk
            *lines, buf = buf.split(b"\n")
            self.seen += [(now, json.loads(line)) for line in lines if line]
            time.sleep(0.01)

    def verdicts(self) -> dict[str, list[tuple[float, dict]]]:
        out: dict[str, list[tuple[float, dict]]] = {}
        for t, r in list(self.seen):
            if r.get("type") == "verdict":
                out.setdefault((r.get("container") or {}).get("name") or "", []).append((t, r))
        return out


def start_all(cs: list[Container], tag: str) -> None:
    def one(c: Container) -> None:
        r = docker(
            "run", "-d", "--network", "none", "--name", c.name, "--label", f"{LABEL}={tag}", c.image
        )
        if r.returncode != 0:
            c.error = f"docker run: {r.stderr.strip()[:160]}"
            return
        inspect_pid(c)  # no pid: its stop is still tried

    with cf.ThreadPoolExecutor(8) as ex:
        list(ex.map(one, cs))


def stop_all(cs: list[Container], grace: int) -> None:
    """One `docker stop` per container, all started at once."""
    go = threading.Barrier(len(cs))

    def one(c: Container) -> None:
        go.wait()
        t0 = time.monotonic()
        r = docker("stop", "-t", str(grace), c.name, timeout=120 + grace)
        c.stop_s = time.monotonic() - t0
        if r.returncode != 0:
            c.error = f"docker stop: {r.stderr.strip()[:160]}"

    with cf.ThreadPoolExecutor(len(cs)) as ex:
        list(ex.map(one, cs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--grace", type=int, default=2, help="docker stop -t (default 2)")
    ap.add_argument("--prefix", default="drain", help="container names start with this")
    ap.add_argument("--ref", help="this commit's sigtrace (git archive) instead of the tree's")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("node_drain: run as root")
    sys.path.insert(0, str(REPO))
    from sigtrace.stories import parse_time
    from tests.images.build import ensure_images

    ensure_images("docker")
    tag = f"{os.getpid()}-{int(time.time())}"
    images = list(DUE)
    cs = [
        Container(i, f"{opts.prefix}-{tag}-{i:03d}", images[i % 2], DUE[images[i % 2]])
        for i in range(opts.containers)
    ]
    tmp = Path(tempfile.mkdtemp(prefix="sigtrace-drain-", dir="/dev/shm"))
    daemon: Tracer[Outcome] | None = None
    follow: Follow | None = None
    try:
        log(f"starting {len(cs)} containers")
        start_all(cs, tag)
        if all(c.error for c in cs):
            raise SystemExit(f"node_drain: no container started: {cs[0].error}")
        spec = daemon_specs(snapshot(tmp / "tree", opts.ref), metrics=False)[0]
        daemon = Tracer(spec, tmp, Outcome(spec.name))
        daemon.start(tmp)
        daemon.wait_live()
        follow = Follow(daemon.out)
        follow.start()
        time.sleep(2)
        load = os.getloadavg()[0]
        a = sample(daemon.row.pid)
        t0 = time.time()
        log(f"docker stop -t {opts.grace}, {len(cs)} at once")
        stop_all([c for c in cs if not c.error], opts.grace)
        names = {c.name for c in cs if not c.error}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not names <= set(follow.verdicts()):
            time.sleep(0.05)
        last = max((t for v in follow.verdicts().values() for t, _ in v), default=time.time())
        b = sample(daemon.row.pid)
        time.sleep(2)  # a duplicate verdict would come by now
        daemon.stop()
        time.sleep(0.2)
        follow.done.set()
        follow.join()
    finally:
        if daemon is not None:
            daemon.kill()
        log(f"removed {remove_labelled(LABEL, tag)} containers")
        records = [r for _, r in follow.seen] if follow else []
        shutil.rmtree(tmp, ignore_errors=True)

    exits, lags = {}, []
    for seen, r in follow.seen if follow else []:
        p = r.get("process") or {}
        name = (p.get("container") or {}).get("name")
        if r.get("type") == "exit" and p.get("pid1") and name in names:
            exits[name] = parse_time(r["time"]) / 1e9
            lags.append(seen - exits[name])
    assert follow is not None
    verdicts = follow.verdicts()
    ok = [c for c in cs if len(verdicts.get(c.name, [])) == 1]
    due = [c for c in ok if verdicts[c.name][0][1].get("verdict") == c.expect]
    complete = [c for c in ok if verdicts[c.name][0][1].get("complete")]
    delays = [verdicts[c.name][0][0] - exits[c.name] for c in ok if c.name in exits]
    lost = sum(int(r.get("count") or 0) for r in records if r.get("type") == "lost")
    stop = next((r for r in records if r.get("type") == "stop"), {})
    span = last - t0
    cpu = (b.ticks - a.ticks) / CLK_TCK if a and b else float("nan")
    run_s = (b.run_ns - a.run_ns) / 1e9 if a and b else float("nan")
    errors = [f"{c.name}: {c.error}" for c in cs if c.error]
    print("| containers | verdicts (due) | lost | daemon CPU, stops -> last verdict |", end="")
    print(" PID 1 exit -> verdict: median | max |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {len(cs)} ({len(cs) // 2} shell form, {len(cs) - len(cs) // 2} exec form)"
        f" | {len(ok)} of {len(cs)} ({len(due)} as due, {len(complete)} complete)"
        f" | {lost} (stop record: {stop.get('lost')})"
        f" | {cpu:.2f} s ticks, {run_s:.2f} s run time over {span:.1f} s"
        f" ({run_s / span * 100 if span > 0 else 0:.1f}% of a CPU)"
        f" | {statistics.median(delays) if delays else float('nan'):.2f} s"
        f" | {max(delays, default=float('nan')):.2f} s |"
    )
    stops = sorted(c.stop_s for c in cs if c.stop_s)
    print(
        f"\ndocker stop -t {opts.grace}: {len(stops)} calls, each took"
        f" {stops[0] if stops else 0:.1f}-{stops[-1] if stops else 0:.1f} s."
        f" Delays include the verdict's settle time (1.5 s after PID 1's exit, by design)."
        f" PID 1 exits of ours seen: {len(exits)}, their `exit` records out after"
        f" {statistics.median(lags) if lags else float('nan'):.2f} s (median),"
        f" {max(lags, default=float('nan')):.2f} s (max)."
        f" Load average before the stops: {load:.2f} on {os.cpu_count()} CPUs."
    )
    if errors:
        print("Errors:\n  " + "\n  ".join(errors[:10]))
    bad = [
        f"{c.name} ({c.image}): {[r.get('verdict') for _, r in verdicts.get(c.name, [])]}"
        for c in cs
        if c not in due
    ]
    if bad:
        print("Not as due:\n  " + "\n  ".join(bad[:10]))


if __name__ == "__main__":
    main()
