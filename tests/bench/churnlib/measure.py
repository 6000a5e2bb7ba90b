"""The measuring around the churn: the tracers started, an idle window, the churn (RSS along
it), settling, the idle window after, their stop, and what each one wrote."""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from live import Tracer
from procstat import CLK_TCK, cpu_pct, cpu_pct_ns, sample

from churnlib.churn import Churn, log
from churnlib.readers import lines_between, read_anchor, read_sigtrace, scrape_metrics
from churnlib.report import Row

VERDICT_DUE_S = 4.0  # sigtrace: verdict 1.5 s after PID 1's exit, + correlator hold-back


def measure_idle(tracers: Sequence[Tracer[Row]], what: str, seconds: float) -> tuple[float, float]:
    """One window for all of them at once; (wall start, wall end)."""
    live = [t for t in tracers if t.live]
    first = {t: t.look(f"{what}-0") for t in live}
    sizes = {t: t.size() for t in live}
    w0 = time.time()
    time.sleep(seconds)
    w1 = time.time()
    for t in live:
        t.offsets[what] = (sizes[t], t.size())
        a, b = first[t], t.look(f"{what}-1")
        if a is None or b is None:
            continue
        pct, pct_ns = cpu_pct(a, b), cpu_pct_ns(a, b)
        r = t.row
        if what == "before":
            r.idle_before_pct, r.idle_before_pct_ns = pct, pct_ns
            r.rss_before_mb, r.fds_before, r.threads_before = b.rss_kb / 1024, b.fds, b.threads
        else:
            r.idle_after_pct, r.idle_after_pct_ns = pct, pct_ns
            r.rss_after_mb, r.fds_after, r.threads_after = b.rss_kb / 1024, b.fds, b.threads
            r.hwm_mb = b.hwm_kb / 1024
    return w0, w1


def settle(tracers: Sequence[Tracer[Row]], since: float, limit: float = 60) -> None:
    """Until every tracer's CPU time stopped growing (2 s with at most one tick) and
    sigtrace's last verdicts are due."""
    t0 = time.monotonic()
    quiet: dict[Tracer[Row], int] = {}
    prev = {t: sample(t.row.pid) for t in tracers if t.live}
    while time.monotonic() - t0 < limit:
        time.sleep(0.5)
        for t in list(prev):
            s = sample(t.row.pid)
            p = prev[t]
            if s is None or p is None:
                quiet[t] = 99
                continue
            quiet[t] = quiet.get(t, 0) + 1 if s.ticks - p.ticks <= 1 else 0
            prev[t] = s
        if time.monotonic() - since >= VERDICT_DUE_S and all(q >= 4 for q in quiet.values()):
            return
    log(f"tracers still busy {limit:.0f} s after the churn; measuring anyway")


def run(
    opts: argparse.Namespace, tmp: Path, tracers: list[Tracer[Row]], churn: Churn
) -> dict[str, Any]:
    result: dict[str, Any] = {"stories": None, "metrics": None}
    for t in tracers:
        if t.row.error:
            continue
        log(f"starting {t.spec.name}")
        t.start(tmp)
    for t in tracers:
        if t.proc is None:
            continue
        try:
            t.wait_live()
        except RuntimeError as e:
            t.fail(f"start: {e}")
    if not any(t.live for t in tracers):
        raise RuntimeError("no tracer is running")
    time.sleep(2)  # start-up work (sigtrace's /proc scan, bpftrace's LLVM) is not idle
    log(f"idle window before the churn: {opts.window:g} s")
    windows = {"before": measure_idle(tracers, "before", opts.window)}

    at_churn = {t: t.look("churn-0") for t in tracers if t.live}
    for t, a in at_churn.items():
        if a is not None:
            t.row.rss_trail.append((0, a.rss_kb / 1024))

    def progress(done: int) -> None:
        for t in tracers:
            if (s := t.look(f"churn-{done}")) is not None:
                t.row.rss_trail.append((done, s.rss_kb / 1024))

    churn.on_progress = progress
    log(f"churn: {len(churn.containers)} containers, {opts.parallel} at a time")
    opts.churn_s = churn.run()
    opts.stopped = sum(1 for c in churn.stops if c.stopped)
    log(f"churn done in {opts.churn_s:.0f} s; waiting for the tracers to settle")
    settle(tracers, time.monotonic())
    for t, a in at_churn.items():
        b = t.look("churn-1")
        if a is not None and b is not None:
            t.row.churn_cpu_s = (b.ticks - a.ticks) / CLK_TCK
    log(f"idle window after the churn: {opts.window:g} s")
    windows["after"] = measure_idle(tracers, "after", opts.window)

    st = tracers[0]
    if opts.metrics and st.live:
        m = re.search(rb"metrics on http://[^:]+:(\d+)/", st.err.read_bytes())
        if m:
            try:
                result["metrics"] = scrape_metrics(int(m.group(1)))
            except (OSError, ValueError) as e:
                log(f"metrics scrape failed: {e}")
    for t in tracers:
        if t.live:
            log(f"stopping {t.spec.name}")
            t.stop()
            if t.row.exit_code not in (0, None) and not t.row.error:
                t.fail(f"exit {t.row.exit_code}: {t.stderr_tail()}")

    ours = {c.name: c for c in churn.containers if c.stopped}
    pid1s = Counter(c.pid for c in ours.values() if c.pid and not c.job)
    for t in tracers:
        if t.proc is None or not t.out.exists():
            continue
        r = t.row
        r.idle_lines = {w: lines_between(t.out, a, b) for w, (a, b) in t.offsets.items()}
        if t is st:
            stories, r.records, r.stops_seen, r.term_records = read_sigtrace(t.out, ours)
            result["stories"] = stories
            r.lost = stories.lost_records
        else:
            r.records, r.stops_seen, r.term_records, r.lost = read_anchor(
                t.out, t.err.read_bytes(), pid1s
            )
    result["windows"] = windows
    return result
