"""The churn: N real containers of the local test images started, stopped and removed a few
at a time, each image with the verdict its stop should get; --jobs adds containers that end
on their own."""

from __future__ import annotations

import concurrent.futures as cf
import signal
import sys
import threading
import time
from collections.abc import Callable

from dockerctl import Container, docker, inspect_pid

LABEL = "sigtrace.bench.churn"  # value: this run's tag, "<our pid>-<start time>"
# image -> the verdict its `docker stop` should get
IMAGES = {
    "st-execform": "graceful",
    "st-shellform": "ignored_by_pid1",
    "st-sigign": "ignored_sig_ign",
    "st-noforward": "not_forwarded",
}
# --jobs: a container that ends on its own, no stop: PID 1 exits 0 with a child left, which
# the pid namespace teardown SIGKILLs (a traced signal inside it); no verdict is due.
JOB_IMAGE = "st-busybox"
JOB_CMD = ["sh", "-c", "sleep 60 & sleep 0.3; exit 0"]


def log(msg: str) -> None:
    print(f"[churn] {msg}", file=sys.stderr, flush=True)


class Churn:
    def __init__(
        self,
        tag: str,
        n: int,
        jobs: int,
        grace: int,
        parallel: int,
        linger: float,
        prefix: str = "churn",
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
            Container(i, f"{prefix}-{tag}-{i:04d}", image, IMAGES.get(image, ""))
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
        c.error = inspect_pid(c)
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
