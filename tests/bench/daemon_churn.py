#!/usr/bin/env python3
"""sigtrace daemon under container churn: idle CPU and memory before and after N container
starts and stops, side by side with sigsnoop and a bpftrace one-liner traced the same way.

Not a test (pytest does not collect it); run as root with Docker up (scripts/services):
  .venv/bin/python tests/bench/daemon_churn.py [--quick] [--containers N] [--json FILE]
Informational: exit code 0 whatever the numbers are.

All three tracers run at once, host-wide, through the same churn: `sigtrace daemon` (JSONL to
a file on tmpfs, Prometheus metrics on 127.0.0.1 unless --no-metrics), `sigsnoop` (libbpf-tools,
every signal: its -s takes one signal only) and `bpftrace` on tracepoint:signal:signal_generate
with sigtrace's five default signals (HUP INT QUIT KILL TERM) in a predicate. The churn is N
real containers of the local test images (tests/images, built if missing, never pulled), named
churn-<run>-NNNN: `docker run -d`, wait until PID 1 has set up its SIGTERM disposition, `docker
stop -t GRACE` (SIGTERM to PID 1; SIGKILL after GRACE s if it is still there), `docker rm`; a
few at a time (--parallel). The images rotate: st-execform (graceful), st-shellform
(ignored_by_pid1), st-sigign (ignored_sig_ign), st-noforward (not_forwarded), so every stop
has a known expected verdict. --jobs N adds N containers that end on their own among them
(st-busybox `sh -c 'sleep 60 & sleep 0.3; exit 0'`: PID 1 exits 0 and the pid namespace
teardown SIGKILLs the sleep, a traced signal inside the container; no verdict is due), as a
node's batch jobs do.

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
import concurrent.futures as cf
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tracers import (
    DEFAULT_SIGNALS,
    LOST_RE,
    REPO,
    VENV_PYTHON,
    installed_copy,
    kernel_header_dirs,
    sigtrace_command,
    snapshot,
)

DOCKER = "docker"
LABEL = "sigtrace.bench.churn"  # value: this run's tag, "<our pid>-<start time>"
# image -> the verdict its `docker stop` should get
IMAGES = {
    "st-execform": "graceful",
    "st-shellform": "ignored_by_pid1",
    "st-sigign": "ignored_sig_ign",
    "st-noforward": "not_forwarded",
}
TRAPS_IN_PID1 = {"st-execform", "st-sigign", "st-noforward"}  # PID 1 itself sets `trap … TERM`
# --jobs: a container that ends on its own, no stop: PID 1 exits 0 with a child left, which
# the pid namespace teardown SIGKILLs (a traced signal inside it); no verdict is due.
JOB_IMAGE = "st-busybox"
JOB_CMD = ["sh", "-c", "sleep 60 & sleep 0.3; exit 0"]
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)
CLK_TCK = os.sysconf("SC_CLK_TCK")
VERDICT_DUE_S = 4.0  # sigtrace: verdict 1.5 s after PID 1's exit, + correlator hold-back


def log(msg: str) -> None:
    print(f"[churn] {msg}", file=sys.stderr, flush=True)


# -- looking at a process -----------------------------------------------------------------


@dataclass
class Sample:
    t: float  # monotonic
    wall: float
    ticks: int  # utime + stime + cutime + cstime
    run_ns: int  # sum of the live threads' schedstat run time (finer than ticks)
    rss_kb: int
    hwm_kb: int
    fds: int
    threads: int


def sample(pid: int) -> Sample | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        run_ns = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                run_ns += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    except (OSError, IndexError):
        return None
    fields = dict((k, v.strip()) for k, _, v in (ln.partition(":") for ln in status.splitlines()))

    def kb(key: str) -> int:
        return int(fields.get(key, "0 kB").split()[0])

    return Sample(
        t=time.monotonic(),
        wall=time.time(),
        ticks=sum(int(x) for x in st[11:15]),
        run_ns=run_ns,
        rss_kb=kb("VmRSS"),
        hwm_kb=kb("VmHWM"),
        fds=fds,
        threads=int(fields.get("Threads", "0")),
    )


def cpu_pct(a: Sample, b: Sample) -> float:
    return (b.ticks - a.ticks) / CLK_TCK / (b.t - a.t) * 100


def cpu_pct_ns(a: Sample, b: Sample) -> float:
    return (b.run_ns - a.run_ns) / 1e9 / (b.t - a.t) * 100


# -- the tracers --------------------------------------------------------------------------


@dataclass
class Spec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGINT
    marker: bytes = b""  # in its output file once it is live; empty: wait settle_s instead
    settle_s: float = 3.0
    output_flag: bool = False  # writes the file itself (else its stdout goes there)
    unavailable: str = ""


@dataclass
class Row:
    name: str
    error: str = ""
    pid: int = 0
    idle_before_pct: float | None = None
    idle_after_pct: float | None = None
    idle_before_pct_ns: float | None = None
    idle_after_pct_ns: float | None = None
    churn_cpu_s: float | None = None
    rss_before_mb: float | None = None
    rss_after_mb: float | None = None
    hwm_mb: float | None = None
    maxrss_mb: float | None = None  # ru_maxrss from wait4, at exit
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
    exit_code: int | None = None
    exit_s: float | None = None


class Tracer:
    def __init__(self, spec: Spec, tmp: Path) -> None:
        self.spec = spec
        self.row = Row(spec.name, error=spec.unavailable)
        slug = re.sub(r"\W+", "-", spec.name).strip("-")
        self.out = tmp / f"{slug}.out"
        self.err = tmp / f"{slug}.err"
        self.proc: subprocess.Popen[bytes] | None = None
        self.samples: dict[str, Sample] = {}
        self.offsets: dict[str, tuple[int, int]] = {}  # idle window -> output file sizes

    def size(self) -> int:
        try:
            return self.out.stat().st_size
        except OSError:
            return 0

    @property
    def live(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and not self.row.error

    def start(self, cwd: Path) -> None:
        argv = [a.replace("{out}", str(self.out)) for a in self.spec.argv]
        with open(self.err, "wb") as ef, open(os.devnull, "wb") as devnull:
            stdout = devnull if self.spec.output_flag else open(self.out, "wb")  # noqa: SIM115
            try:
                self.proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=ef,
                    env={**os.environ, **self.spec.env},
                    cwd=cwd,  # not the repository: `python -m` would import its sigtrace first
                    start_new_session=True,  # our Ctrl-C is ours to pass on, in order
                )
            finally:
                if stdout is not devnull:
                    stdout.close()
        self.row.pid = self.proc.pid

    def wait_live(self) -> None:
        assert self.proc is not None
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited {self.proc.returncode}: {self.stderr_tail()}")
            if self.spec.marker:
                if self.out.exists() and self.spec.marker in self.out.read_bytes()[: 1 << 16]:
                    return
            elif time.monotonic() - t0 >= self.spec.settle_s:
                return
            if time.monotonic() - t0 > 60:
                raise RuntimeError("not live after 60 s")
            time.sleep(0.02)

    def stderr_tail(self, n: int = 300) -> str:
        try:
            return self.err.read_bytes()[-n:].decode(errors="replace").strip()
        except OSError:
            return ""

    def look(self, what: str) -> Sample | None:
        if not self.live:
            return None
        assert self.proc is not None
        s = sample(self.proc.pid)
        if s is None or self.proc.poll() is not None:
            self.fail(f"gone at {what}: exit {self.proc.returncode}; {self.stderr_tail()}")
            return None
        self.samples[what] = s
        return s

    def fail(self, why: str) -> None:
        if not self.row.error:
            self.row.error = why[:200]
            log(f"{self.spec.name}: {self.row.error}")

    def stop(self, timeout: float = 20) -> None:
        """The stop signal, then wait (SIGKILL after timeout): exit code, time, ru_maxrss."""
        p = self.proc
        if p is None or p.returncode is not None:
            return
        t0 = time.monotonic()
        _signal(p.pid, self.spec.stop_signal)
        status, ru = _wait4(p, timeout)
        self.row.exit_s = time.monotonic() - t0
        self.row.exit_code = p.returncode = os.waitstatus_to_exitcode(status)
        self.row.maxrss_mb = ru.ru_maxrss / 1024

    def kill(self) -> None:
        """Cleanup: whatever is left of its process group goes."""
        p = self.proc
        if p is None or p.returncode is not None:
            return
        with contextlib.suppress(OSError):
            os.killpg(p.pid, signal.SIGTERM)
        status, _ = _wait4(p, 3)
        p.returncode = os.waitstatus_to_exitcode(status)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, sig)


def _wait4(p: subprocess.Popen[bytes], timeout: float) -> tuple[int, Any]:
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            return status, ru
        if time.monotonic() > deadline:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                _signal(p.pid, signal.SIGKILL)
            _, status, ru = os.wait4(p.pid, 0)
            return status, ru
        time.sleep(0.005)


def bpftrace_program() -> str:
    pred = " || ".join(f"args->sig == {s}" for s in DEFAULT_SIGNALS)
    return (
        'BEGIN { printf("ready\\n"); } '
        f"tracepoint:signal:signal_generate /{pred}/ "
        '{ printf("%d %d %s %d %d %d\\n", nsecs, pid, comm, args->sig, args->pid, '
        "args->result); }"
    )


def specs(sigtrace_path: Path | None, metrics: bool) -> list[Spec]:
    st, st_env = sigtrace_command(sigtrace_path)
    st += ["daemon", "--backend", "core", "--output", "{out}"]
    if metrics:
        st += ["--metrics", "127.0.0.1:0"]
    hdr = kernel_header_dirs()
    bt_env = {"BPFTRACE_KERNEL_SOURCE": hdr[0], "BPFTRACE_KERNEL_BUILD": hdr[1]} if hdr else {}
    return [
        Spec(
            "sigtrace daemon",
            st,
            env=st_env,
            stop_signal=signal.SIGTERM,
            marker=b'"type":"start"',
            output_flag=True,
            unavailable="" if VENV_PYTHON.exists() else f"{VENV_PYTHON} missing",
        ),
        Spec(
            "sigsnoop",
            ["sigsnoop"],  # SIGINT: it exits through main() and flushes its stdout
            unavailable="" if shutil.which("sigsnoop") else "sigsnoop not installed",
        ),
        Spec(
            "bpftrace",
            ["bpftrace", "-e", bpftrace_program()],
            env=bt_env,
            marker=b"ready",
            unavailable="" if shutil.which("bpftrace") else "bpftrace not installed",
        ),
    ]


# -- the churn ----------------------------------------------------------------------------


@dataclass
class Container:
    i: int
    name: str
    image: str
    expect: str  # the verdict due; "" for a job (none due)
    pid: int = 0  # host pid of PID 1
    error: str = ""
    run_s: float = 0.0
    stop_s: float = 0.0
    stopped: bool = False  # stopped (a job: ended) and removed

    @property
    def job(self) -> bool:
        return not self.expect


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [DOCKER, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C must not cut a docker call in half
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, 124, "", f"timed out after {timeout} s")


def _pid1_ready(c: Container, timeout: float = 3.0) -> None:
    """Until PID 1 has set its SIGTERM disposition (its images' `trap … TERM`) and started a
    child: a stop before that would get another verdict than the image's."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{c.pid}/status").read_text()
            children = Path(f"/proc/{c.pid}/task/{c.pid}/children").read_text().split()
        except OSError:
            return
        masks = {
            k: int(v, 16) for k, v in re.findall(r"^(SigCgt|SigIgn):\s*([0-9a-f]+)", status, re.M)
        }
        trapped = bool((masks.get("SigCgt", 0) | masks.get("SigIgn", 0)) & SIGTERM_BIT)
        if children and (trapped or c.image not in TRAPS_IN_PID1):
            return
        time.sleep(0.02)


class Churn:
    def __init__(
        self, tag: str, n: int, jobs: int, grace: int, parallel: int, linger: float
    ) -> None:
        self.tag = tag
        self.grace = grace
        self.parallel = parallel
        self.linger = linger
        self.stop = threading.Event()
        self.on_progress: Callable[[int], None] = lambda done: None
        names = list(IMAGES)
        kinds = [names[i % len(names)] for i in range(n)]
        for j in range(jobs):  # spread evenly among the stops
            kinds.insert(round((j + 0.5) * (n + jobs) / jobs), JOB_IMAGE)
        self.containers = [
            Container(i, f"churn-{tag}-{i:04d}", image, IMAGES.get(image, ""))
            for i, image in enumerate(kinds)
        ]
        self.failures_in_a_row = 0
        self.lock = threading.Lock()

    @property
    def stops(self) -> list[Container]:
        return [c for c in self.containers if not c.job]

    def one(self, c: Container) -> None:
        if self.stop.is_set():
            return
        t0 = time.monotonic()
        cmd = JOB_CMD if c.job else []
        r = docker("run", "-d", "--name", c.name, "--label", f"{LABEL}={self.tag}", c.image, *cmd)
        c.run_s = time.monotonic() - t0
        if r.returncode != 0:
            c.error = f"docker run: {r.stderr.strip()[:160]}"
            with self.lock:
                self.failures_in_a_row += 1
                if self.failures_in_a_row >= 20:
                    log(f"20 container starts failed in a row, giving up: {c.error}")
                    self.stop.set()
            return
        with self.lock:
            self.failures_in_a_row = 0
        if c.job:
            r = docker("wait", c.name)
            if r.returncode != 0 or r.stdout.strip() != "0":
                c.error = f"docker wait: {(r.stdout + r.stderr).strip()[:160]}"
                return
            self._remove(c)
            return
        r = docker("inspect", "--format", "{{.State.Pid}}", c.name)
        if r.returncode == 0 and r.stdout.strip().isdigit():
            c.pid = int(r.stdout.strip())
            _pid1_ready(c)
        else:
            c.error = f"docker inspect: {r.stderr.strip()[:160]}"
        left = self.linger - (time.monotonic() - t0 - c.run_s)
        if left > 0:
            time.sleep(left)
        if self.stop.is_set():
            return  # the cleanup removes it
        t1 = time.monotonic()
        r = docker("stop", "-t", str(self.grace), c.name, timeout=60 + self.grace)
        c.stop_s = time.monotonic() - t1
        if r.returncode != 0:
            c.error = f"docker stop: {r.stderr.strip()[:160]}"
            return
        self._remove(c)

    @staticmethod
    def _remove(c: Container) -> None:
        """It has stopped: remove it (a failure is the container's error)."""
        c.stopped = True
        r = docker("rm", c.name)
        if r.returncode != 0:
            c.error = f"docker rm: {r.stderr.strip()[:160]}"

    def run(self) -> float:
        """All of them, `parallel` at a time; returns the wall time."""
        t0 = time.monotonic()
        ex = cf.ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="churn")
        try:
            futs = [ex.submit(self.one, c) for c in self.containers]
            pending = set(futs)
            step = max(1, len(futs) // 10)
            next_report = step
            while pending:
                done, pending = cf.wait(pending, timeout=1.0)
                for f in done:
                    f.result()  # a bug in one() should not pass silently
                finished = len(futs) - len(pending)
                if finished >= next_report:
                    next_report += step
                    self.on_progress(finished)
                    bad = sum(1 for c in self.containers if c.error)
                    log(
                        f"{finished}/{len(futs)} containers done in "
                        f"{time.monotonic() - t0:.0f} s ({bad} with errors)"
                    )
        finally:
            self.stop.set()
            # Let every docker call in flight end, so that none creates a container after
            # the cleanup has looked; a second Ctrl-C must not cut that short.
            old = signal.signal(signal.SIGINT, signal.SIG_IGN)
            ex.shutdown(wait=True, cancel_futures=True)
            signal.signal(signal.SIGINT, old)
        return time.monotonic() - t0


def remove_containers(label_value: str | None = None) -> int:
    """Force-remove this run's containers (label_value), or, when None, those left behind by
    earlier runs whose process is gone. Never anyone else's."""
    r = docker(
        "ps",
        "-a",
        "--filter",
        f"label={LABEL}",
        "--format",
        f'{{{{.ID}}}} {{{{.Label "{LABEL}"}}}}',
    )
    ids = []
    for line in r.stdout.splitlines():
        cid, _, tag = line.partition(" ")
        if label_value is not None:
            if tag == label_value:
                ids.append(cid)
        else:
            owner = tag.split("-", 1)[0]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                ids.append(cid)
    for i in range(0, len(ids), 50):
        docker("rm", "-f", *ids[i : i + 50], timeout=120)
    return len(ids)


# -- reading what they wrote --------------------------------------------------------------


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


# -- the table ----------------------------------------------------------------------------


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
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} %"

    def mb(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f} MB"

    for r in rows:
        if r.idle_before_pct is None and r.error:
            lines.append(f"| {r.name} | n/a: {r.error} |" + " |" * (len(head) - 2))
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
        lines.append("| " + " | ".join(cells) + " |")
        if r.error:
            lines.append(f"|  ↳ {r.name}: {r.error} |" + " |" * (len(head) - 2))
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


# -- main ---------------------------------------------------------------------------------


def which_sigtrace(installed: bool, ref: str | None) -> str:
    def git(*args: str) -> str:
        r = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
        return r.stdout.strip()

    if installed:
        return f".venv/bin/sigtrace as installed ({installed_copy() or 'this working tree'})"
    if ref is not None:
        return f"commit {git('rev-parse', '--short', ref)} ({ref}), python -m sigtrace"
    dirty = (
        " + uncommitted changes" if git("status", "--porcelain", "--", "sigtrace", "bpf") else ""
    )
    head = git("rev-parse", "--short", "HEAD") or "?"
    return f"working tree at {head}{dirty} (a copy taken at start, python -m sigtrace)"


def measure_idle(tracers: Sequence[Tracer], what: str, seconds: float) -> tuple[float, float]:
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


def settle(tracers: Sequence[Tracer], since: float, limit: float = 60) -> None:
    """Until every tracer's CPU time stopped growing (2 s with at most one tick) and
    sigtrace's last verdicts are due."""
    t0 = time.monotonic()
    quiet: dict[Tracer, int] = {}
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


def run(opts: argparse.Namespace, tmp: Path, tracers: list[Tracer], churn: Churn) -> dict[str, Any]:
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
    if n := remove_containers(None):
        log(f"removed {n} containers left by earlier runs that are gone")

    def on_term(*_: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with `&`

    load_before = os.getloadavg()[0]
    tag = f"{os.getpid()}-{int(time.time())}"
    what = which_sigtrace(opts.installed, opts.ref)
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    tmp = Path(tempfile.mkdtemp(prefix="sigtrace-churn-", dir=base))
    tracers: list[Tracer] = []
    churn = Churn(tag, opts.containers, opts.jobs, opts.grace, opts.parallel, opts.linger)
    result: dict[str, Any] = {}
    t_start = time.monotonic()
    try:
        path = None if opts.installed else snapshot(tmp / "snapshot", opts.ref)
        tracers = [Tracer(s, tmp) for s in specs(path, opts.metrics)]
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
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup
        churn.stop.set()
        for t in tracers:
            t.kill()
        if n := remove_containers(tag):
            log(f"removed {n} containers of this run")
        shutil.rmtree(tmp, ignore_errors=True)
    took = time.monotonic() - t_start
    rows = [t.row for t in tracers]
    stories = result.get("stories")
    metrics = result.get("metrics")
    if opts.json:
        data = {
            "sigtrace": what,
            "kernel": os.uname().release,
            "cpus": os.cpu_count(),
            "seconds": took,
            "options": {k: v for k, v in vars(opts).items() if k != "json"},
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
    print(f"\nsigtrace measured: {what}")
    print(
        f"Ran {took:.0f} s on {os.cpu_count()} CPUs, kernel {os.uname().release}; "
        f"load average before {load_before:.2f}"
        + (" (other work was running: numbers are noisy)" if load_before > 0.5 else "")
    )


if __name__ == "__main__":
    main()
