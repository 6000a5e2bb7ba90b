#!/usr/bin/env python3
"""Where sigtrace's time goes under a signal storm (a helper for run_bench.py; not a test).

Runs `sigtrace --signal all` under cProfile while tests/bench/storm.c sends SIGUSR1 at
--rate kills/s (0: flat out) for --seconds, then prints:
  - the run: kills, records written, lost, wall time until sigtrace caught up, CPU per record;
  - the top functions by own time (cProfile inflates Python call overhead, so read the
    shares rather than the absolute numbers);
  - offline stage costs over the same kernel records (recorded with --save-raw): decode,
    correlate (without /proc naming), JSON encode, each timed alone per record.
Also, with --plain, the same storm against an unprofiled sigtrace for its real CPU/record.
With --hooks: no profile; sigtrace with its default filters, storm untraced and traced, and
the kernel's BPF run-time statistics (kernel.bpf_stats_enabled, restored afterwards) per
program: what each attached hook costs a kill, and what is left for the tracepoint machinery.

usage (root): .venv/bin/python tests/bench/profile_sigtrace.py [--rate 20000] [--seconds 2]
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchrun import build_storm
from procstat import busy_until, cpu_ticks
from tracers import HERE, REPO
from tracers import VENV_PYTHON as PY


def _pin(cpu: int) -> None:
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {cpu})


def _sigtrace_argv(args: list[str]) -> list[str]:
    return [str(PY), "-m", "sigtrace", *args]


SIGTRACE_PATH = REPO  # where `python -m sigtrace` imports from (--ref: a commit's copy)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SIGTRACE_PATH)}


def _storm_rate(storm: Path, seconds: float) -> float:
    import json

    r = subprocess.run(
        [str(storm), str(seconds)], capture_output=True, check=True, preexec_fn=lambda: _pin(0)
    )
    return json.loads(r.stdout)["rate"]


def _start_live(argv: list[str], out: Path) -> subprocess.Popen[bytes]:
    """sigtrace on CPU 1, returned once its start record is in `out` (tracing is live)."""
    p = subprocess.Popen(
        argv,
        env=_env(),
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=lambda: _pin(1),
    )
    while not (out.exists() and b'"type":"start"' in out.read_bytes()[:65536]):
        if p.poll() is not None:
            raise SystemExit(f"sigtrace exited {p.returncode}")
        time.sleep(0.01)
    return p


def _prog_stats(ignore: set[int] | None = None) -> dict[int, tuple[str, int, int]]:
    """id -> (name, run_time_ns, run_cnt) of the loaded BPF programs not in ignore."""
    import json

    r = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, check=True)
    return {
        p["id"]: (p.get("name", "?"), p.get("run_time_ns", 0), p.get("run_cnt", 0))
        for p in json.loads(r.stdout)
        if p["id"] not in (ignore or set())
    }


def hooks(tmp: Path, storm: Path, seconds: float, reps: int) -> None:
    import statistics

    stats_file = Path("/proc/sys/kernel/bpf_stats_enabled")
    before = stats_file.read_text().strip()
    out = tmp / "hooks.jsonl"
    base = [_storm_rate(storm, seconds) for _ in range(reps)]
    others = set(_prog_stats())  # bpftool here cannot name a program's process: new ids
    p = _start_live(
        _sigtrace_argv(["--backend", "core", "--format", "jsonl", "--output", str(out)]), out
    )
    try:
        plain = [_storm_rate(storm, seconds) for _ in range(reps)]
        stats_file.write_text("1")
        s0 = _prog_stats(others)
        with_stats = [_storm_rate(storm, seconds) for _ in range(reps)]
        s1 = _prog_stats(others)
    finally:
        stats_file.write_text(before)
        os.kill(p.pid, signal.SIGTERM)
        p.wait(30)
    after = [_storm_rate(storm, seconds) for _ in range(reps)]
    u = statistics.median(base + after)
    t = statistics.median(plain)
    ts = statistics.median(with_stats)
    kills = ts * seconds * reps
    print(f"storm untraced {u:,.0f}/s; with sigtrace (default filters) {t:,.0f}/s = {t / u:.0%}")
    print(
        f"per kill: untraced {1e9 / u:.0f} ns, traced {1e9 / t:.0f} ns, +{1e9 / t - 1e9 / u:.0f} ns"
    )
    print(f"BPF programs while the storm ran ({ts:,.0f} kills/s with stats on):")
    total = 0.0
    for pid_, (name, rt1, cnt1) in sorted(s1.items()):
        _, rt0, cnt0 = s0.get(pid_, (name, 0, 0))
        rt, cnt = rt1 - rt0, cnt1 - cnt0
        if cnt:
            total += rt / kills
            print(
                f"  {name:28s} {cnt / kills:5.2f} runs/kill {rt / cnt:6.0f} ns/run"
                f" {rt / kills:6.0f} ns/kill"
            )
    extra = 1e9 / t - 1e9 / u
    print(
        f"  BPF total {total:.0f} ns/kill; the rest of the +{extra:.0f} ns, {extra - total:.0f} ns,"
    )
    print("  is the hooks' machinery: syscall tracepoints switch every syscall to the traced")
    print("  entry/exit path (kill and rt_sigreturn here), and the program dispatch itself.")


def live(tmp: Path, storm: Path, rate: float, seconds: float, profile: bool) -> dict:
    out, raw, prof = tmp / "out.jsonl", tmp / "raw.bin", tmp / "prof.out"
    args = ["--backend", "core", "--signal", "all", "--format", "jsonl", "--output", str(out)]
    if profile:
        argv = [str(PY), "-m", "cProfile", "-o", str(prof), "-m", "sigtrace", *args]
        argv += ["--save-raw", str(raw)]
    else:
        argv = _sigtrace_argv(args)
    p = _start_live(argv, out)
    try:
        c0 = cpu_ticks(p.pid)
        t0 = time.monotonic()
        r = subprocess.run(
            [str(storm), str(seconds), str(rate)],
            capture_output=True,
            check=True,
            preexec_fn=lambda: _pin(0),
        )
        last = busy_until(p.pid, 120)
        cpu = (cpu_ticks(p.pid) - c0) / os.sysconf("SC_CLK_TCK")
        elapsed = last - t0
        os.kill(p.pid, signal.SIGTERM)
        p.wait(60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    import json

    stop = json.loads(out.read_bytes().rstrip().rsplit(b"\n", 1)[-1])
    records = sum(v for k, v in stop["records"].items() if k != "lost")
    return {
        "storm": json.loads(r.stdout),
        "records": records,
        "lost": stop["lost"],
        "elapsed": elapsed,
        "cpu": cpu,
        "prof": prof,
        "raw": raw,
    }


def stages(raw: Path) -> list[tuple[str, float, int]]:
    """(stage, seconds, items) for decode, correlate and encode over a recording."""
    sys.path.insert(0, str(SIGTRACE_PATH))
    import orjson

    from sigtrace import rawlog, wire
    from sigtrace.correlate import Correlator
    from sigtrace.timefmt import Clock

    with open(raw, "rb") as f:
        offset, it = rawlog.read(f)
        datas = list(it)
    t = time.perf_counter()
    recs = [wire.decode(d) for d in datas]
    t_dec = time.perf_counter() - t
    corr = Correlator(Clock(offset).iso)
    outs: list[dict] = []
    t = time.perf_counter()
    for rec in recs:
        outs.extend(corr.feed(rec))
    outs.extend(corr.flush(None))
    t_cor = time.perf_counter() - t
    t = time.perf_counter()
    lines = [orjson.dumps(o, option=orjson.OPT_APPEND_NEWLINE).decode() for o in outs]
    t_enc = time.perf_counter() - t
    sink = io.StringIO()
    t = time.perf_counter()
    for ln in lines:
        sink.write(ln)
    t_wr = time.perf_counter() - t
    return [
        ("wire.decode", t_dec, len(datas)),
        ("Correlator.feed (basic names)", t_cor, len(datas)),
        ("orjson encode", t_enc, len(outs)),
        ("stream.write (in memory)", t_wr, len(outs)),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=20_000, help="kills/s; 0 = flat out")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--plain", action="store_true", help="also run without cProfile")
    ap.add_argument("--hooks", action="store_true", help="cost of the hooks, default filters")
    ap.add_argument("--ref", metavar="COMMIT", help="profile this commit's sigtrace")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("profile_sigtrace: needs root")
    tmp = Path(tempfile.mkdtemp(prefix="sigtrace-prof-", dir="/dev/shm"))
    storm = build_storm(tmp)
    global SIGTRACE_PATH
    if opts.ref:
        sys.path.insert(0, str(HERE))
        from tracers import snapshot

        SIGTRACE_PATH = snapshot(tmp / "snapshot", opts.ref)
    os.chdir(tmp)  # `python -m` puts the current directory first on sys.path
    try:
        if opts.hooks:
            hooks(tmp, storm, opts.seconds, 3)
            return
        if opts.plain:
            r = live(tmp, storm, opts.rate, opts.seconds, profile=False)
            print(
                f"plain: {r['storm']['kills']:,} kills at {r['storm']['rate']:,.0f}/s ->"
                f" {r['records']:,} records, lost {r['lost']:,}, caught up after"
                f" {r['elapsed']:.2f} s: {r['records'] / r['elapsed']:,.0f} records/s;"
                f" CPU {r['cpu']:.2f} s = {r['cpu'] / max(1, r['records']) * 1e6:.1f}"
                " µs per record written"
            )
        r = live(tmp, storm, opts.rate, opts.seconds, profile=True)
        print(
            f"cProfile: {r['storm']['kills']:,} kills at {r['storm']['rate']:,.0f}/s ->"
            f" {r['records']:,} records, lost {r['lost']:,}, caught up after"
            f" {r['elapsed']:.2f} s, CPU {r['cpu']:.2f} s"
        )
        buf = io.StringIO()
        st = pstats.Stats(str(r["prof"]), stream=buf)
        st.sort_stats("tottime").print_stats(opts.top)
        print("\n".join(ln for ln in buf.getvalue().splitlines() if ln.strip())[:8000])
        print("\noffline stages over the recorded kernel records (µs per item):")
        for name, secs, n in stages(r["raw"]):
            print(f"  {name:32s} {secs / max(1, n) * 1e6:7.2f} µs x {n:,}")
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(f"(children peak RSS {ru.ru_maxrss / 1024:.1f} MB)")
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
