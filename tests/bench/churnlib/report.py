"""The churn's table (one row per tracer, ratios against sigsnoop) and the notes below it."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field
from typing import Any

import mdtable
from live import Outcome

from churnlib.churn import IMAGES, JOB_CMD, JOB_IMAGE, Churn
from churnlib.readers import Stories


@dataclass
class Row(Outcome):
    """A tracer's row: what became of it (Outcome) and what was measured."""

    idle_before_pct: float | None = None  # % of one CPU, from clock ticks
    idle_after_pct: float | None = None
    idle_before_pct_ns: float | None = None  # the same from the threads' run time
    idle_after_pct_ns: float | None = None
    churn_cpu_s: float | None = None  # CPU seconds from the first start to settled
    rss_before_mb: float | None = None  # VmRSS at the end of each idle window
    rss_after_mb: float | None = None
    hwm_mb: float | None = None  # VmHWM after the churn
    fds_before: int | None = None
    fds_after: int | None = None
    threads_before: int | None = None
    threads_after: int | None = None
    records: int | None = None
    stops_seen: int | None = None  # distinct PID 1s of ours that got a SIGTERM
    term_records: int | None = None  # records/lines of SIGTERM to one of them
    idle_lines: dict[str, int] = field(default_factory=dict)  # lines written per idle window
    rss_trail: list[tuple[int, float]] = field(default_factory=list)  # (containers done, MB)
    lost: int | None = None


def _x(v: float | None, ref: float | None) -> str:
    if v is None or ref is None:
        return ""
    if ref == 0:
        return " (sigsnoop 0)" if v else ""
    return f" ({v / ref:.2g}x)"


def render(rows: list[Row], opts: argparse.Namespace) -> str:
    ref = next((r for r in rows if r.name == "sigsnoop" and not r.error), None)
    head = [
        "tracer",
        f"idle CPU before ({opts.window:g} s)",
        "idle CPU after",
        "CPU in churn",
        "RSS before",
        "RSS after",
        "VmHWM",
        "fds / threads (before → after)",
        "records",
        f"our stops seen (of {opts.stopped})",
        "lost",
        "exit",
    ]
    lines = mdtable.head(head)

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} %"

    def mb(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f} MB"

    for r in rows:
        if r.idle_before_pct is None and r.error:
            lines.append(mdtable.partial([r.name, f"n/a: {r.error}"], len(head)))
            continue
        is_ref = r is ref

        def ratio(attr: str, r: Row = r, is_ref: bool = is_ref) -> str:
            return "" if is_ref or ref is None else _x(getattr(r, attr), getattr(ref, attr))

        cells = [
            r.name,
            pct(r.idle_before_pct) + ratio("idle_before_pct_ns"),
            pct(r.idle_after_pct) + ratio("idle_after_pct_ns"),
            ("-" if r.churn_cpu_s is None else f"{r.churn_cpu_s:.2f} s") + ratio("churn_cpu_s"),
            mb(r.rss_before_mb) + ratio("rss_before_mb"),
            mb(r.rss_after_mb) + ratio("rss_after_mb"),
            mb(r.hwm_mb) + ratio("hwm_mb"),
            f"{r.fds_before} / {r.threads_before} → {r.fds_after} / {r.threads_after}",
            ("-" if r.records is None else f"{r.records:,}") + ratio("records"),
            "-" if r.stops_seen is None else f"{r.stops_seen:,}",
            "-" if r.lost is None else f"{r.lost:,}",
            "-" if r.exit_code is None else f"{r.exit_code} in {r.exit_s:.2f} s",
        ]
        lines.append(mdtable.row(cells))
        if r.error:
            lines.append(mdtable.partial([f" ↳ {r.name}: {r.error}"], len(head) - 1))
    return "\n".join(lines)


def notes(
    rows: list[Row],
    stories: Stories | None,
    churn: Churn,
    metrics: dict[str, Any] | None,
    opts: argparse.Namespace,
) -> list[str]:
    n = len(churn.stops)
    jobs = [c for c in churn.containers if c.job]
    out = []
    errs = [c for c in churn.containers if c.error]
    run_s = sorted(c.run_s for c in churn.containers if c.run_s)
    out.append(
        f"Churn: {n} containers ({', '.join(IMAGES)} in turn), {opts.parallel} at a time,"
        f" `docker stop -t {opts.grace}`, in {opts.churn_s:.0f} s; {opts.stopped} stopped"
        + (
            f"; and {len(jobs)} jobs ({JOB_IMAGE} `{shlex.join(JOB_CMD)}`, no stop),"
            f" {sum(1 for c in jobs if c.stopped)} ended"
            if jobs
            else ""
        )
        + f"; {len(errs)} with docker errors"
        + (f" (first: {errs[0].name}: {errs[0].error})" if errs else "")
        + (f"; docker run median {run_s[len(run_s) // 2]:.2f} s" if run_s else "")
        + "."
    )
    if stories is not None:
        s = stories
        v = ", ".join(f"{k} {c}" for k, c in sorted(s.verdicts.items()))
        out.append(
            f"sigtrace daemon: a story (complete verdict) for {s.told}/{n} containers"
            f" ({s.told / n:.0%}); the expected verdict for {s.as_expected}/{n}"
            f" [{v or 'none'}]; {s.incomplete} only incomplete; {s.duplicates} with more than"
            f" one verdict; the stop SIGTERM to PID 1 for {s.stop_signals}/{n}; PID 1's exit"
            f" for {s.pid1_exits}/{n}. Lost: {s.lost_records} in `lost` records, stop record"
            f" says {s.stop_lost}."
            + (f" {s.bad_lines} lines were not JSON." if s.bad_lines else "")
        )
        if s.mismatches:
            out.append("  unexpected verdicts (first 5): " + "; ".join(s.mismatches[:5]))
        if jobs:
            out.append(f"  verdicts for the jobs: {s.job_verdicts} (none is due).")
        if s.foreign_verdicts:
            out.append(f"  and {s.foreign_verdicts} verdicts for containers not ours meanwhile.")
    if metrics is not None:
        out.append(
            f"Metrics after the churn: {metrics['verdict_series']} sigtrace_verdicts_total"
            f" series ({metrics['containers']} container labels"
            + (", incl. _other: the label bound was reached" if metrics["other"] else "")
            + f", {metrics['verdicts_total']:.0f} verdicts), {metrics['signal_series']}"
            f" sigtrace_signals_total series, /metrics {metrics['bytes'] / 1024:.0f} KiB."
        )
    terms = ", ".join(f"{r.name} {r.term_records:,}" for r in rows if r.term_records is not None)
    if terms:
        out.append(f"SIGTERM records/lines to our containers' PID 1s: {terms}.")
    bg = ", ".join(
        f"{r.name} {r.idle_lines.get('before', 0):,} → {r.idle_lines.get('after', 0):,}"
        for r in rows
        if r.idle_lines
    )
    if bg:
        out.append(
            "Other work on this host: lines written during the idle windows (before → after;"
            f" sigsnoop's block-buffered, ±70): {bg}."
        )
    ss = next((r for r in rows if r.name == "sigsnoop" and r.idle_lines), None)
    if ss is not None:
        busiest = max(ss.idle_lines.values()) / opts.window
        if busiest > 50:
            out.append(
                f"  WARNING: ~{busiest:,.0f} signals/s host-wide from other work during an idle"
                " window: the idle CPU there includes tracing them (sigsnoop sees every"
                " signal; sigtrace and bpftrace only the five defaults)."
            )
    precise = ", ".join(
        f"{r.name} {r.idle_before_pct_ns:.3f} % → {r.idle_after_pct_ns:.3f} %"
        for r in rows
        if r.idle_before_pct_ns is not None and r.idle_after_pct_ns is not None
    )
    if precise:
        out.append(f"Idle CPU from the threads' schedstat run time (ns, finer): {precise}.")
    trails = [
        f"{r.name} " + ", ".join(f"{d}: {mb:.1f}" for d, mb in r.rss_trail)
        for r in rows
        if len(r.rss_trail) > 1
    ]
    if trails:
        out.append("RSS along the churn (containers done: MB): " + "; ".join(trails) + ".")
    peaks = ", ".join(f"{r.name} {r.maxrss_mb:.1f} MB" for r in rows if r.maxrss_mb is not None)
    if peaks:
        out.append(f"Peak RSS at exit (wait4 ru_maxrss): {peaks}.")
    out.append(
        "sigsnoop traces every signal (its -s takes one); bpftrace and sigtrace the five"
        " defaults (HUP INT QUIT KILL TERM). Ratios (nx) are against sigsnoop."
    )
    return out
