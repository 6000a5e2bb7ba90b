#!/usr/bin/env python3
"""sigtrace benchmark: one table, a row per sigtrace backend beside sigsnoop, bpftrace and BCC.

Not a test (pytest does not collect it); run as root: .venv/bin/python tests/bench/run_bench.py
[--quick] [--only ROW]... [--json FILE]. Informational: exit code 0 whether targets are met
or not. Every process it starts ends with it; `--quick` takes one to two minutes.

Rows, all measured in the same run, each as a ratio against the first:
  sigtrace                   --backend core (CO-RE BPF, what auto picks here): the reference,
                             with the targets it has to meet, in its default mode (no
                             syscall hook, as `sigtrace daemon`).
  sigtrace --syscalls        the same with the kill-family syscalls hooked (failed calls,
                             fan-out counts), which puts every syscall of every process on
                             the kernel's slow path while it traces: "n/a" when the sigtrace
                             measured has no such flag.
  sigtrace --backend bcc     its BCC program (compiled at every start) and /proc lookups.
  sigtrace --backend tracefs a private ftrace instance, its text trace_pipe parsed in Python;
                             the bench checks that no instance is left behind.
  sigtrace --backend ptrace  attaches to given processes only (--pid): the storm is started
                             first, waiting on stdin (storm.c -w), the tracer attached to it,
                             then the storm let go. Every signal stops the storm until sigtrace
                             has handled it: that is its cost, and it cannot lose records (its
                             lost columns are n/a). It sees only the storm, the rest the host.
  sigsnoop, bpftrace, BCC    the anchors: tools that report signals, and their cost.
`--only` selects rows by key (sigtrace, sigtrace-syscalls, sigtrace-bcc, sigtrace-tracefs,
sigtrace-ptrace, sigsnoop, bpftrace, bcc); the sigtrace row is always kept. A cell a tracer
cannot fill says "n/a" with a numbered footnote, as do numbers that mean something else for
one tracer.

What each column measures:
  time to tracing  exec of the tracer -> its "live" line on a stdout pipe (sigtrace: the
                   start record; sigsnoop: its header, line-buffered with stdbuf; bpftrace:
                   printf in BEGIN; BCC: "ready" printed after BPF() attached). Median.
  peak RSS         ru_maxrss of the tracer from wait4() when it exits, the largest over all
                   of its runs here (the --signal all storms dominate).
  storm            tests/bench/storm.c (built with gcc at run time) sends itself SIGUSR1 in
                   a loop and counts kills/s, with each tracer attached with its default
                   filters (sigtrace: TERM KILL INT QUIT HUP, so USR1 is filtered out: in the
                   kernel by core and bcc; tracefs filters the signal events in the kernel
                   but reads every kill()'s sys_exit_kill line and drops it in user space;
                   ptrace stops the storm at every signal and drops USR1 after;
                   bpftrace/BCC: the same five in a predicate; sigsnoop: -s 15, the most it
                   can filter). Every traced storm sits between two untraced ones and is
                   compared with their mean (the untraced rate drifts by tens of percent
                   within seconds here); median over rounds (then the lowest and highest
                   round), and what the tracer reported lost meanwhile. Storm on CPU 0,
                   tracer on CPU 1.
  other syscalls   what a tracer costs a process that sends no signal: storm.c -g loops on
                   syscall(SYS_getppid) with each tracer started as for the storm (default
                   filters; ptrace attached to the loop's pid), between two untraced -g
                   loops: ns per call (1e9 / calls/s, median over rounds) and calls/s as a
                   percentage of the neighbours' mean (median over rounds, then the
                   lowest and highest round). A hook on the kill-family syscalls
                   (--syscalls) slows every syscall on the host; signal tracepoints alone
                   (sigtrace's default, the anchors) do not.
  all signals      every signal traced into a file on tmpfs while the storm runs flat out:
                   records written / (storm start -> tracer done writing, i.e. its CPU time
                   stops growing), and what it reported lost. Also the storm's own kills/s,
                   which shows how much each tracer slows the traced process.
  paced            the same with the storm paced to --paced-rate kills/s (default 75k: two
                   sigtrace records each, so the 150k records/s target is what is offered);
                   a tracer that slows the storm below the pace (ptrace) says so. The
                   no-tracer row gives the untraced paced storm, run just before and after
                   the paced runs: whether the machine kept the pace at all meanwhile.
A sigtrace record is a JSONL line: 2 per kill (the signal, naming its kill() call, and the
delivery), whichever the backend. The anchors write one line per generated signal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mdtable
from benchrun import (
    build_storm,
    closing_lines,
    exit_on_signals,
    hold_signals,
    run_info,
    which_sigtrace,
)
from procstat import busy_until, wait4
from tracers import (
    Counts,
    Tracer,
    all_tracers,
    snapshot,
)

TARGET_READY_S = 0.1
TARGET_RSS_MB = 30.0
TARGET_STORM_RATIO = 0.95
TARGET_GETPPID_RATIO = 0.97
TARGET_RECORDS_S = 150_000


class TracerFailed(Exception):
    pass


class Procs:
    """Every process the benchmark starts, so that all of them end with it."""

    def __init__(self, cwd: Path) -> None:
        self.live: dict[int, subprocess.Popen[bytes]] = {}
        self.started: set[int] = set()  # every pid it ever started
        self.cwd = cwd

    def spawn(
        self,
        argv: Sequence[str],
        *,
        cpu: int | None = None,
        env: dict[str, str] | None = None,
        stdin: int | IO[bytes] | None = subprocess.DEVNULL,
        stdout: int | IO[bytes] | None = subprocess.DEVNULL,
        stderr: int | IO[bytes] | None = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        def pin() -> None:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})

        p = subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, **(env or {})},
            cwd=self.cwd,  # not the repository: `python -m` would import its sigtrace first
            start_new_session=True,  # our Ctrl-C is ours to pass on, in order
            preexec_fn=pin if cpu is not None else None,
        )
        self.live[p.pid] = p
        self.started.add(p.pid)
        return p

    def reap(self, p: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
        """Wait for p (SIGKILL after timeout); (exit code, peak RSS in MB)."""
        status, ru = wait4(p.pid, timeout)
        p.returncode = os.waitstatus_to_exitcode(status)
        self.live.pop(p.pid, None)
        return p.returncode, ru.ru_maxrss / 1024

    def stop(
        self, p: subprocess.Popen[bytes], sig: int, timeout: float = 20
    ) -> tuple[float, float]:
        """Send sig, wait; (peak RSS MB, seconds to exit)."""
        t = time.monotonic()
        self._signal(p, sig, group=False)
        _, rss = self.reap(p, timeout)
        return rss, time.monotonic() - t

    @staticmethod
    def _signal(p: subprocess.Popen[bytes], sig: int, group: bool = True) -> None:
        try:
            if group:
                os.killpg(p.pid, sig)
            else:
                os.kill(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill_all(self) -> None:
        for p in list(self.live.values()):
            self._signal(p, signal.SIGTERM)
        for p in list(self.live.values()):
            try:
                self.reap(p, 3)
            except ChildProcessError:
                self.live.pop(p.pid, None)
        for p in list(self.live.values()):
            for f in (p.stdin, p.stdout, p.stderr):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()


@dataclass
class StormRun:
    kills: int
    seconds: float
    rate: float


@dataclass
class ThroughputRun:
    kills: int
    storm_rate: float
    elapsed: float
    records: int
    signals: int
    lost: int
    records_per_s: float
    syscalls: int = 0


@dataclass
class Row:
    name: str
    key: str = ""
    error: str = ""
    records_per_kill: int = 1
    na: dict[str, str] = field(default_factory=dict)  # column -> why it is n/a
    notes: dict[str, str] = field(default_factory=dict)  # column -> what its number means
    ready_s: list[float] = field(default_factory=list)
    exit_s: list[float] = field(default_factory=list)
    rss_mb: dict[str, float] = field(default_factory=dict)
    storm: list[float] = field(default_factory=list)
    storm_ratio: list[float] = field(default_factory=list)  # each against its neighbours
    storm_lost: list[int] = field(default_factory=list)  # what it reported lost meanwhile
    getppid: list[float] = field(default_factory=list)  # getppid() calls/s (storm.c -g)
    getppid_ratio: list[float] = field(default_factory=list)  # each against its neighbours
    all_runs: list[ThroughputRun] = field(default_factory=list)
    paced_runs: list[ThroughputRun] = field(default_factory=list)

    def note_rss(self, what: str, mb: float) -> None:
        self.rss_mb[what] = max(mb, self.rss_mb.get(what, 0.0))


class Bench:
    def __init__(self, opts: argparse.Namespace, tmp: Path, procs: Procs) -> None:
        self.opts = opts
        self.tmp = tmp
        self.procs = procs
        two = (os.cpu_count() or 1) >= 2
        self.storm_cpu = 0 if two else None
        self.tracer_cpu = 1 if two else None
        self.storm_bin = tmp / "storm"
        self.untraced: list[float] = []
        self.untraced_getppid: list[float] = []  # storm.c -g: getppid() calls/s
        self.untraced_all: list[StormRun] = []
        self.untraced_paced: list[StormRun] = []  # can this machine keep the pace at all?

    def log(self, msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    # -- the storm ----------------------------------------------------------------------

    def build_storm(self) -> None:
        build_storm(self.storm_bin.parent)

    def spawn_storm(
        self, seconds: float, rate: float = 0, getppid: bool = False
    ) -> subprocess.Popen[bytes]:
        """A storm waiting for its go (storm.c -w): its pid is known before it sends a
        signal, so that a tracer that needs it (ptrace's --pid) can attach first.
        getppid: a loop on getppid() instead, no signals (storm.c -g)."""
        return self.procs.spawn(
            [str(self.storm_bin), "-w", *(["-g"] if getppid else []), str(seconds), str(rate)],
            cpu=self.storm_cpu,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def run_storm(self, p: subprocess.Popen[bytes], seconds: float) -> StormRun:
        """Let a waiting storm go; its result once it is done."""
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write(b"g")
        p.stdin.close()
        fd = p.stdout.fileno()
        out = b""
        deadline = time.monotonic() + seconds + 60  # a tracer may hold it stopped
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                out += chunk
        p.stdout.close()
        code, _ = self.procs.reap(p, 5)
        if code != 0 or not out:
            raise TracerFailed(f"storm exited {code} after {seconds} s: {out[-200:]!r}")
        d = json.loads(out)
        return StormRun(d["kills"], d["seconds"], d["rate"])

    def drop_storm(self, p: subprocess.Popen[bytes]) -> None:
        """End a storm that never got its go (EOF on stdin: it exits without sending)."""
        if p.pid not in self.procs.live:
            return
        for f in (p.stdin, p.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        self.procs.reap(p, 5)

    def storm(self, seconds: float, rate: float = 0, getppid: bool = False) -> StormRun:
        p = self.spawn_storm(seconds, rate, getppid)
        try:
            return self.run_storm(p, seconds)
        finally:
            self.drop_storm(p)

    # -- time to tracing ----------------------------------------------------------------

    def time_to_tracing(self, t: Tracer, row: Row) -> None:
        for _ in range(self.opts.ready_reps):
            # ptrace needs a process to attach to: an idle storm that is never let go.
            target = self.spawn_storm(0.1) if t.needs_target else None
            try:
                ready, rss = self._ready_once(t, row, target.pid if target else None)
            finally:
                if target is not None:
                    self.drop_storm(target)
            row.ready_s.append(ready)
            row.note_rss("idle", rss)

    def _ready_once(self, t: Tracer, row: Row, pid: int | None) -> tuple[float, float]:
        err = self.tmp / "ready.err"
        with open(err, "wb") as ef:
            t0 = time.monotonic()
            p = self.procs.spawn(
                t.command("ready", pid=pid), env=t.env, stdout=subprocess.PIPE, stderr=ef
            )
            assert p.stdout is not None
            fd = p.stdout.fileno()
            buf = b""
            ready: float | None = None
            while ready is None and time.monotonic() - t0 < 60:
                if select.select([fd], [], [], 0.5)[0]:
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        break
                    buf += chunk
                    if t.marker in buf:
                        ready = time.monotonic() - t0
            # Stop it and keep reading, so that it never blocks on a full pipe.
            t_stop = time.monotonic()
            self.procs._signal(p, t.stop_signal, group=False)
            while time.monotonic() - t_stop < 20 and select.select([fd], [], [], 0.5)[0]:
                if not os.read(fd, 1 << 16):
                    break
            p.stdout.close()
            _, rss = self.procs.reap(p, 20)
            row.exit_s.append(time.monotonic() - t_stop)
        if ready is None:
            raise TracerFailed(f"never said it was live: {err.read_bytes()[-300:]!r}")
        return ready, rss

    # -- tracer writing to a file -------------------------------------------------------

    def start(
        self, t: Tracer, mode: str, out: Path, row: Row, pid: int | None = None
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """Start t writing to out; pid: the storm, for a tracer that needs its target."""
        err = self.tmp / f"{mode}.err"
        out.unlink(missing_ok=True)
        argv = t.command(mode, out, pid)
        with open(err, "wb") as ef:
            if t.uses_output_flag:
                p = self.procs.spawn(argv, cpu=self.tracer_cpu, env=t.env, stderr=ef)
            else:
                with open(out, "wb") as of:
                    p = self.procs.spawn(argv, cpu=self.tracer_cpu, env=t.env, stdout=of, stderr=ef)
        t0 = time.monotonic()
        settle = max(row.ready_s, default=3.0) * 1.5 + 0.3
        while True:
            if p.poll() is not None:
                self.procs.live.pop(p.pid, None)
                raise TracerFailed(f"exited {p.returncode}: {err.read_bytes()[-300:]!r}")
            if t.marker_in_file:
                if out.exists() and t.marker in out.read_bytes()[: 1 << 16]:
                    break
            elif time.monotonic() - t0 >= settle:
                break
            if time.monotonic() - t0 > 60:
                self.procs.stop(p, signal.SIGKILL, 5)
                raise TracerFailed("not live after 60 s")
            time.sleep(0.01)
        return p, err

    def finish(
        self, t: Tracer, p: subprocess.Popen[bytes], err: Path, out: Path, row: Row
    ) -> Counts:
        rss, _ = self.procs.stop(p, t.stop_signal)
        row.note_rss("load", rss)
        return t.count(out, err.read_bytes())

    def between_untraced(
        self, t: Tracer, row: Row, untraced: list[float], getppid: bool = False
    ) -> tuple[float, float, Counts]:
        """One storm with t attached in its default mode (default filters), against the
        untraced storms just before (untraced[-1]) and just after it (appended to
        untraced): this machine's storm rate drifts by tens of percent within seconds, so
        only neighbours compare. getppid: storm.c -g loops, no signals. Returns (its
        rate, that rate / the neighbours' mean, what t counted)."""
        out = self.tmp / "default.out"
        seconds = self.opts.storm_seconds
        before = untraced[-1]
        storm = self.spawn_storm(seconds, getppid=getppid)
        try:
            p, err = self.start(t, "default", out, row, storm.pid)
            try:
                rate = self.run_storm(storm, seconds).rate
            finally:
                c = self.finish(t, p, err, out, row)
        finally:
            self.drop_storm(storm)
        after = self.storm(seconds, getppid=getppid).rate
        untraced.append(after)
        return rate, rate / ((before + after) / 2), c

    def storm_with(self, t: Tracer, row: Row) -> None:
        rate, ratio, c = self.between_untraced(t, row, self.untraced)
        row.storm.append(rate)
        row.storm_ratio.append(ratio)
        row.storm_lost.append(c.lost)

    def getppid_with(self, t: Tracer, row: Row) -> None:
        rate, ratio, _ = self.between_untraced(t, row, self.untraced_getppid, getppid=True)
        row.getppid.append(rate)
        row.getppid_ratio.append(ratio)

    def throughput(self, t: Tracer, row: Row, rate: float) -> ThroughputRun:
        out = self.tmp / "all.out"
        storm = self.spawn_storm(self.opts.all_seconds, rate)
        try:
            p, err = self.start(t, "all", out, row, storm.pid)
            try:
                t0 = time.monotonic()
                st = self.run_storm(storm, self.opts.all_seconds)
                elapsed = busy_until(p.pid, 60) - t0
            finally:
                c = self.finish(t, p, err, out, row)
                out.unlink(missing_ok=True)
        finally:
            self.drop_storm(storm)
        return ThroughputRun(
            st.kills,
            st.rate,
            elapsed,
            c.records,
            c.signals,
            c.lost,
            c.records / elapsed,
            c.syscalls,
        )


# -- the table --------------------------------------------------------------------------


def _med(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _k(x: float) -> str:
    return f"{x / 1000:.0f}k" if x >= 10_000 else f"{x / 1000:.1f}k"


def _mark(ok: bool) -> str:
    return "**PASS**" if ok else "**MISS**"


def _ratio(x: float | None, ref: float | None) -> str:
    if x is None or not ref:
        return ""
    return f" ({x / ref:.2g}x)"


def _tp_median(runs: list[ThroughputRun]) -> ThroughputRun | None:
    if not runs:
        return None
    return sorted(runs, key=lambda r: r.records_per_s)[(len(runs) - 1) // 2]


class _Footnotes:
    """Numbered footnotes, each text once, in the order the table first cites them."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def cite(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f" [{self.texts.index(text) + 1}]"

    def lines(self) -> list[str]:
        return [f"[{i}] {t}" for i, t in enumerate(self.texts, 1)]


def _row_cells(
    r: Row,
    is_ref: bool,
    ref: Row,
    ua: float | None,
    opts: argparse.Namespace,
    notes: _Footnotes,
) -> list[str]:
    """The cells after the name, by column: see render's head."""
    ref_ready = _med(ref.ready_s)
    ref_rss = max(ref.rss_mb.values(), default=None)
    ref_all = _tp_median(ref.all_runs)
    ready = _med(r.ready_s)
    rss = max(r.rss_mb.values(), default=None)
    st = _med(r.storm)
    st_ratio = _med(r.storm_ratio)
    gp = _med(r.getppid)
    gp_ratio = _med(r.getppid_ratio)
    a = _tp_median(r.all_runs)
    pc = _tp_median(r.paced_runs)
    c: dict[str, str] = dict.fromkeys(COLUMNS, "-")
    if ready is not None:
        if is_ref:
            c["ready"] = f"{ready:.3f} s {_mark(ready <= TARGET_READY_S)}"
        else:
            c["ready"] = f"{ready:.3f} s{_ratio(ready, ref_ready)}"
    if rss is not None:
        if is_ref:
            c["rss"] = f"{rss:.1f} MB {_mark(rss < TARGET_RSS_MB)}"
        else:
            c["rss"] = f"{rss:.1f} MB{_ratio(rss, ref_rss)}"
    if st is not None and st_ratio is not None:
        mark = f" {_mark(st_ratio >= TARGET_STORM_RATIO)}" if is_ref else ""
        spread = f"{min(r.storm_ratio):.0%}-{max(r.storm_ratio):.0%}"
        c["storm"] = f"{_k(st)}/s ({st_ratio:.0%}; {spread}){mark}"
        lost = _med(r.storm_lost)
        if lost:
            c["storm"] += f"; lost {lost:,.0f}"
            if "storm_lost" in r.notes:
                c["storm"] += notes.cite(r.notes["storm_lost"])
    if gp and gp_ratio is not None:
        spread = f"{min(r.getppid_ratio):.0%}-{max(r.getppid_ratio):.0%}"
        mark = f" {_mark(gp_ratio >= TARGET_GETPPID_RATIO)}" if is_ref else ""
        c["getppid"] = f"{1e9 / gp:.0f} ns ({gp_ratio:.0%}; {spread}){mark}"
    if a is not None:
        if is_ref:
            # Flat out, the storm offers far more than any tracer here can take, so
            # this is capacity; zero loss at the target rate is the paced column.
            ok = a.records_per_s >= TARGET_RECORDS_S
            c["all"] = f"{_k(a.records_per_s)}/s {_mark(ok)}"
        else:
            c["all"] = f"{_k(a.records_per_s)}/s" + _ratio(
                a.records_per_s, ref_all.records_per_s if ref_all else None
            )
        c["all_lost"] = f"{a.lost:,}"
        c["all_storm"] = f"{_k(a.storm_rate)}/s" + (f" ({a.storm_rate / ua:.0%})" if ua else "")
    if pc is not None:
        want = r.records_per_kill * pc.kills
        got = f"{_k(pc.records_per_s)}/s ({pc.records / want:.0%} of {want:,} expected)"
        if pc.storm_rate < 0.9 * opts.paced_rate:
            got += f", the storm reached only {_k(pc.storm_rate)} kills/s"
        if is_ref:
            got += " " + _mark(pc.lost == 0 and pc.records >= 0.99 * want)
        c["paced"] = got
        c["paced_lost"] = f"{pc.lost:,}"
    for col in COLUMNS:
        if col in r.na:
            c[col] = "n/a" + notes.cite(r.na[col])
        elif col in r.notes and c[col] != "-":
            c[col] += notes.cite(r.notes[col])
    return [c[col] for col in COLUMNS]


COLUMNS = (
    "ready",
    "rss",
    "storm",
    "getppid",
    "all",
    "all_lost",
    "all_storm",
    "paced",
    "paced_lost",
)


def render(
    rows: list[Row],
    untraced: list[float],
    untraced_all: list[StormRun],
    opts: argparse.Namespace,
    untraced_paced: Sequence[StormRun] = (),
    untraced_getppid: Sequence[float] = (),
) -> str:
    base = _med(untraced)
    ref = rows[0]  # sigtrace, its default backend
    ref_all = _tp_median(ref.all_runs)
    paced = f"{_k(opts.paced_rate)} kills/s"
    head = [
        "tracer",
        "time to tracing",
        "peak RSS",
        "storm, default filters (vs untraced neighbours)",
        "other syscalls: getppid() loop, ns/call (calls/s vs untraced neighbours)",
        "all signals, max storm: records/s",
        "lost",
        "storm kills/s meanwhile",
        f"paced {paced}: records/s",
        "lost",
    ]
    lines = mdtable.head(head)
    ua = _med([*untraced, *(r.rate for r in untraced_all)])
    up = _med([r.rate for r in untraced_paced])
    ug = _med(untraced_getppid)
    none: dict[str, str] = dict.fromkeys(COLUMNS, "-")
    if base:
        none["storm"] = f"{_k(base)}/s (100%)"
    if ug:
        none["getppid"] = f"{1e9 / ug:.0f} ns (100%)"
    if ua:
        none["all_storm"] = f"{_k(ua)}/s"
    if up:
        none["paced"] = f"storm {_k(up)} kills/s, before and after"
    lines.append(mdtable.row(["no tracer", *(none[col] for col in COLUMNS)]))
    notes = _Footnotes()
    for i, r in enumerate(rows):
        if r.error and not r.ready_s:
            lines.append(mdtable.partial([r.name, f"n/a: {r.error}"], len(head)))
            continue
        cells = [r.name, *_row_cells(r, i == 0, ref, ua, opts, notes)]
        lines.append(mdtable.row(cells))
        if r.error:
            lines.append(mdtable.partial([f" ↳ {r.name}: {r.error}"], len(head) - 1))
    exits = ", ".join(f"{r.name} {_med(r.exit_s):.2f} s" for r in rows if r.exit_s)
    lines += [
        "",
        *notes.lines(),
        "",
        f"Targets ({ref.name}): time to tracing ≤ {TARGET_READY_S} s;"
        f" peak RSS < {TARGET_RSS_MB:.0f} MB;"
        f" storm with default filters ≥ {TARGET_STORM_RATIO:.0%} of untraced;"
        f" ≥ {_k(TARGET_RECORDS_S)} records/s with --signal all (max storm: capacity) and"
        f" zero loss (paced {paced} = {_k(2 * opts.paced_rate)} records/s offered);"
        f" other syscalls ≥ {TARGET_GETPPID_RATIO:.0%} of untraced.",
        f"Records: sigtrace JSONL lines, every backend (2 per kill: the signal, with its"
        f" kill() call, and the delivery), anchors text lines (1 per kill). Ratios (nx) are"
        f" against {ref.name} (--backend core, the default). Lost in the storm column: what"
        f" the tracer reported lost with its default filters (median over rounds)."
        f" Time from SIGTERM/SIGINT to exit: {exits}.",
        "Other syscalls: storm.c -g, a getppid() loop that sends no signal, with each tracer"
        " in its default mode: what tracing costs every other process on the host (a syscall"
        " hook puts each syscall on the kernel's slow path). `sigtrace` and `sigtrace daemon`"
        " hook no syscall unless given --syscalls (the `sigtrace --syscalls` row).",
    ]
    if ref_all is not None:
        lines.append(
            f"{ref.name}, max storm (median run): {ref_all.records:,} records"
            f" ({ref_all.signals:,} signals, {ref_all.syscalls:,} naming kill()) in"
            f" {ref_all.elapsed:.2f} s from {ref_all.kills:,} kills, {ref_all.lost:,} lost."
        )
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------


def run(opts: argparse.Namespace, tmp: Path, procs: Procs) -> tuple[list[Row], Bench]:
    bench = Bench(opts, tmp, procs)
    bench.build_storm()
    tracers = all_tracers(None if opts.installed else snapshot(tmp / "snapshot", opts.ref))
    if opts.only:
        keep = select_rows(tracers, opts.only)
        tracers = [tracers[i] for i in keep]
    rows = [
        Row(
            t.name,
            key=t.key,
            error=t.unavailable,
            records_per_kill=t.records_per_kill,
            na=t.na,
            notes=t.notes,
        )
        for t in tracers
    ]
    runnable = [(t, r) for t, r in zip(tracers, rows, strict=True) if not t.unavailable]

    def guarded(what: str, r: Row, fn: Callable[[], None]) -> None:
        if r.error:
            return
        bench.log(f"{what}: {r.name}")
        try:
            fn()
        except (TracerFailed, subprocess.CalledProcessError, OSError, RuntimeError) as exc:
            r.error = f"{what}: {exc}"[:160]
            bench.log(r.error)

    for t, r in runnable:
        guarded("time to tracing", r, lambda t=t, r=r: bench.time_to_tracing(t, r))

    def rounds(what: str, fn: Callable[[Tracer, Row], None]) -> None:
        for i in range(opts.storm_reps if runnable else 0):
            # a different tracer first each round, so that none always follows the same one
            n = i % len(runnable)
            for t, r in runnable[n:] + runnable[:n]:
                guarded(what, r, lambda t=t, r=r: fn(t, r))

    bench.log("storm: untraced, then each tracer, then untraced again, ...")
    bench.untraced.append(bench.storm(opts.storm_seconds).rate)
    rounds("storm, default filters", bench.storm_with)
    bench.log("other syscalls: a getppid() loop untraced, then with each tracer, ...")
    bench.untraced_getppid.append(bench.storm(opts.storm_seconds, getppid=True).rate)
    rounds("other syscalls", bench.getppid_with)
    bench.untraced_all.append(bench.storm(opts.all_seconds))

    for _ in range(opts.all_reps):
        for t, r in runnable:
            guarded(
                "all signals, max storm",
                r,
                lambda t=t, r=r: r.all_runs.append(bench.throughput(t, r, 0)),
            )
        bench.untraced_all.append(bench.storm(opts.all_seconds))
        bench.untraced_paced.append(bench.storm(opts.all_seconds, opts.paced_rate))
        for t, r in runnable:
            guarded(
                "all signals, paced",
                r,
                lambda t=t, r=r: r.paced_runs.append(bench.throughput(t, r, opts.paced_rate)),
            )
        bench.untraced_paced.append(bench.storm(opts.all_seconds, opts.paced_rate))
    return rows, bench


def select_rows(tracers: Sequence[Tracer], only: Sequence[str]) -> list[int]:
    """Indexes of the rows --only asks for: a row's key exactly, else every row whose key
    or name contains it (case-insensitive). The first row (sigtrace's default backend) is
    always kept: it is the reference every ratio needs."""
    keep = {0}
    for word in (w.strip().lower() for o in only for w in o.split(",")):
        if not word:
            continue
        hits = [i for i, t in enumerate(tracers) if t.key == word] or [
            i for i, t in enumerate(tracers) if word in t.key or word in t.name.lower()
        ]
        if not hits:
            keys = ", ".join(t.key for t in tracers)
            raise SystemExit(f"run_bench: --only {word}: no such row (rows: {keys})")
        keep.update(hits)
    return sorted(keep)


def leftover_instances(pids: set[int]) -> list[str]:
    """ftrace instances named after a process the bench started (`sigtrace-<pid>`, the
    tracefs backend's): one that its tracer did not remove. They are removed here (their
    processes have ended) and named in the output."""
    for root in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        d = Path(root, "instances")
        try:
            names = os.listdir(d)
        except OSError:
            continue
        left = []
        for name in names:
            m = re.fullmatch(r"sigtrace-(\d+)", name)
            if m and int(m[1]) in pids:
                left.append(name)
                with contextlib.suppress(OSError):
                    os.rmdir(d / name)
        return left
    return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, shorter storms")
    ap.add_argument("--json", metavar="FILE", help="also write the raw numbers here")
    ap.add_argument(
        "--only",
        action="append",
        metavar="ROW",
        help="only these rows (repeatable, or comma-separated), besides the sigtrace row"
        " every ratio needs: sigtrace, sigtrace-syscalls, sigtrace-bcc, sigtrace-tracefs,"
        " sigtrace-ptrace, sigsnoop, bpftrace, bcc (the BCC anchor); a word that is no row's"
        " exact name selects every row that contains it (ptrace, tracefs, sigtrace- for all"
        " backends)",
    )
    ap.add_argument(
        "--installed",
        action="store_true",
        help="run .venv/bin/sigtrace as installed (default: this working tree's sigtrace)",
    )
    ap.add_argument("--ref", metavar="COMMIT", help="bench this commit's sigtrace (git archive)")
    ap.add_argument(
        "--paced-rate",
        type=float,
        default=TARGET_RECORDS_S / 2,
        help="kills/s of the paced storm (default: 2 records each = the records/s target)",
    )
    opts = ap.parse_args()
    opts.ready_reps = 3 if opts.quick else 5
    opts.storm_reps = 3 if opts.quick else 5
    opts.storm_seconds = 0.5 if opts.quick else 1.0
    opts.all_seconds = 1.0 if opts.quick else 2.0
    opts.all_reps = 1 if opts.quick else 2

    if os.geteuid() != 0:
        sys.exit("run_bench: needs root (BPF)")
    for tool in ("gcc",):
        if shutil.which(tool) is None:
            sys.exit(f"run_bench: {tool} not found")

    exit_on_signals()
    load_before = os.getloadavg()[0]
    what = which_sigtrace(opts.installed, opts.ref)
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    tmp = Path(tempfile.mkdtemp(prefix="sigtrace-bench-", dir=base))
    procs = Procs(tmp)
    t_start = time.monotonic()
    try:
        rows, bench = run(opts, tmp, procs)
    except KeyboardInterrupt:
        print("run_bench: interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        hold_signals()
        procs.kill_all()
        shutil.rmtree(tmp, ignore_errors=True)
    took = time.monotonic() - t_start
    left = leftover_instances(procs.started)
    if opts.json:
        data: dict[str, Any] = {
            **run_info(what, took, opts),
            "untraced_storm": bench.untraced,
            "untraced_getppid": bench.untraced_getppid,
            "untraced_storm_all_seconds": [asdict(s) for s in bench.untraced_all],
            "untraced_storm_paced": [asdict(s) for s in bench.untraced_paced],
            "tracers": [asdict(r) for r in rows],
            "ftrace_instances_left": left,
            "targets": {
                "ready_s": TARGET_READY_S,
                "rss_mb": TARGET_RSS_MB,
                "storm_ratio": TARGET_STORM_RATIO,
                "records_per_s": TARGET_RECORDS_S,
            },
        }
        Path(opts.json).write_text(json.dumps(data, indent=2) + "\n")
    table = render(
        rows, bench.untraced, bench.untraced_all, opts, bench.untraced_paced, bench.untraced_getppid
    )
    print(table)
    for line in closing_lines(what, took, load_before):
        print(line)
    print(
        "ftrace instances its tracers left behind: "
        + (", ".join(left) + " (removed now)" if left else "none")
    )


if __name__ == "__main__":
    main()
