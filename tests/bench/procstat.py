"""A process as the benches see it from /proc/<pid>: CPU time (clock ticks and the threads'
schedstat run time), memory, fds, threads, context switches; and waiting for one to end with
its peak RSS (wait4)."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


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
    """None: the process is gone (or was never there)."""
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
    """CPU between two samples, as % of one CPU, from clock ticks."""
    return (b.ticks - a.ticks) / CLK_TCK / (b.t - a.t) * 100


def cpu_pct_ns(a: Sample, b: Sample) -> float:
    """The same from the threads' run time (ns): finer than a tick per window."""
    return (b.run_ns - a.run_ns) / 1e9 / (b.t - a.t) * 100


def switches(pid: int) -> int:
    """Voluntary context switches of all of pid's threads."""
    n = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    n += int(line.split()[1])
    return n


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError):
        return 0


def busy_until(pid: int, limit_s: float) -> float:
    """Waits until a tracer's CPU time stops growing (what the kernel handed over is
    written); returns when it was last busy (time.monotonic)."""
    last, prev, idle = time.monotonic(), cpu_ticks(pid), 0
    while idle < 3 and time.monotonic() - last < limit_s:
        time.sleep(0.1)
        now = cpu_ticks(pid)
        if now - prev >= 2:
            last, idle = time.monotonic(), 0
        else:
            idle += 1
        prev = now
    return last


def wait4(pid: int, timeout: float) -> tuple[int, resource.struct_rusage]:
    """Waits for a child that leads its own process group (start_new_session); after timeout
    the group is SIGKILLed. (wait status, rusage: ru_maxrss is its peak RSS in KiB)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status, ru = os.wait4(pid, os.WNOHANG)
        if done:
            return status, ru
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            _, status, ru = os.wait4(pid, 0)
            return status, ru
        time.sleep(0.005)
