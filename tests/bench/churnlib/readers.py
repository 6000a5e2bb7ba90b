"""Reading what each tracer wrote through the churn: sigtrace's JSONL (a story for each
container of ours?), the anchors' text lines (sigsnoop's, our bpftrace program's), and the
daemon's /metrics."""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockerctl import Container
from tracers import LOST_RE


@dataclass
class Stories:
    told: int = 0  # containers of ours with a complete verdict
    incomplete: int = 0  # with only an incomplete one (tracing ended mid-story)
    as_expected: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    pid1_exits: int = 0
    stop_signals: int = 0
    duplicates: int = 0  # more than one verdict for one container
    lost_records: int = 0
    stop_lost: int | None = None
    stop_counts: dict[str, int] = field(default_factory=dict)
    foreign_verdicts: int = 0  # verdicts for other people's containers meanwhile
    job_verdicts: int = 0  # verdicts for our --jobs containers (none is due)
    mismatches: list[str] = field(default_factory=list)
    bad_lines: int = 0


def read_sigtrace(path: Path, ours: dict[str, Container]) -> tuple[Stories, int, int, int]:
    """(stories, records written, our PID 1s that got a SIGTERM, SIGTERM records to them)."""
    s = Stories()
    per: dict[str, list[dict[str, Any]]] = {}
    exits: set[str] = set()
    terms: set[str] = set()
    term_records = 0
    lines = 0
    with open(path, "rb") as f:
        for raw in f:
            lines += 1
            try:
                rec = json.loads(raw)
            except ValueError:
                s.bad_lines += 1
                continue
            kind = rec.get("type")
            if kind == "lost":
                s.lost_records += int(rec.get("count") or 0)
            elif kind == "stop":
                s.stop_lost = rec.get("lost")
                s.stop_counts = rec.get("records") or {}
            elif kind == "verdict":
                name = ((rec.get("container") or {}).get("name")) or ""
                if name in ours:
                    per.setdefault(name, []).append(rec)
                else:
                    s.foreign_verdicts += 1
            elif kind == "exit":
                p = rec.get("process") or {}
                name = (p.get("container") or {}).get("name") or ""
                if p.get("pid1") and name in ours and not ours[name].job:
                    exits.add(name)
            elif kind == "signal" and rec.get("signal") == "SIGTERM":
                tgt = rec.get("target") or {}
                name = (tgt.get("container") or {}).get("name") or ""
                if tgt.get("pid1") and name in ours and not ours[name].job:
                    terms.add(name)
                    term_records += 1
    s.pid1_exits = len(exits)
    s.stop_signals = len(terms)
    for name, recs in per.items():
        if ours[name].job:
            s.job_verdicts += len(recs)
            continue
        if len(recs) > 1:
            s.duplicates += 1
        complete = [r for r in recs if r.get("complete")]
        if not complete:
            s.incomplete += 1
            continue
        s.told += 1
        v = complete[0].get("verdict", "?")
        s.verdicts[v] = s.verdicts.get(v, 0) + 1
        if v == ours[name].expect:
            s.as_expected += 1
        else:
            s.mismatches.append(f"{name} ({ours[name].image}): {v}, expected {ours[name].expect}")
    records = sum(v for k, v in s.stop_counts.items() if k != "lost") if s.stop_counts else lines
    return s, records, len(terms), term_records


def read_anchor(path: Path, stderr: bytes, pid1s: Counter[int]) -> tuple[int, int, int, int]:
    """(lines about signals, our PID 1s that got a SIGTERM, SIGTERM lines to them, lost) from
    sigsnoop's `TIME PID COMM SIG TPID RESULT` or our bpftrace `nsecs pid comm sig tpid
    result` lines. pid1s: host pid -> how many of our PID 1s had it (pids are reused: pid_max
    is 32768 on some hosts, and a churn goes through thousands)."""
    records = term_lines = lost = 0
    terms: Counter[int] = Counter()
    with open(path, "rb") as f:
        for line in f:
            m = LOST_RE.search(line)
            if m:
                lost += int(m.group(1))
                continue
            parts = line.split()
            if len(parts) < 5 or not parts[-1].lstrip(b"-").isdigit():
                continue  # the header, "Attaching N probes", "ready", blank
            try:
                sig, tpid = int(parts[-3]), int(parts[-2])
            except ValueError:
                continue
            records += 1
            if sig == signal.SIGTERM and tpid in pid1s:
                terms[tpid] += 1
                term_lines += 1
    lost += sum(int(m) for m in LOST_RE.findall(stderr))
    seen = sum(min(k, pid1s[pid]) for pid, k in terms.items())
    return records, seen, term_lines, lost


def lines_between(path: Path, a: int, b: int) -> int:
    with open(path, "rb") as f:
        f.seek(a)
        return f.read(max(0, b - a)).count(b"\n")


def scrape_metrics(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    series = [ln for ln in text.splitlines() if ln.startswith("sigtrace_verdicts_total{")]
    containers = set()
    total = 0.0
    for ln in series:
        m = re.search(r'container="([^"]*)"', ln)
        if m:
            containers.add(m.group(1))
        total += float(ln.rsplit(" ", 1)[1])
    signal_series = sum(1 for ln in text.splitlines() if ln.startswith("sigtrace_signals_total{"))
    return {
        "verdict_series": len(series),
        "verdicts_total": total,
        "containers": len(containers),
        "other": "_other" in containers,
        "signal_series": signal_series,
        "bytes": len(text),
    }
