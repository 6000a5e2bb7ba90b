"""Tracer processes that run side by side for a while (the daemon benches: daemon_churn,
daemon_idle, node_drain): how to start each one into an output file, tell it is live, sample
it from /proc, and stop it in order (its stop signal, then its exit code, time and peak RSS).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from procstat import Sample, sample, wait4
from tracers import (
    DEFAULT_SIGNALS,
    VENV_PYTHON,
    bpftrace_program,
    kernel_header_dirs,
    sigtrace_command,
)


@dataclass
class Spec:
    name: str
    argv: list[str]  # "{out}": the output file
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGINT
    marker: bytes = b""  # in its output file once it is live; empty: wait settle_s instead
    settle_s: float = 3.0
    output_flag: bool = False  # writes the file itself (else its stdout goes there)
    unavailable: str = ""


@dataclass
class Outcome:
    """What became of a tracer's process; a bench's row extends it with what it measured."""

    name: str
    error: str = ""
    pid: int = 0
    maxrss_mb: float | None = None  # ru_maxrss from wait4, at exit
    exit_code: int | None = None
    exit_s: float | None = None


R = TypeVar("R", bound=Outcome)


def _stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Tracer(Generic[R]):
    def __init__(
        self, spec: Spec, tmp: Path, row: R, log: Callable[[str], None] = _stderr_log
    ) -> None:
        self.spec = spec
        self.row = row
        self.log = log
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
        """A sample, kept under `what`; None (and the row's error) if it is gone."""
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
            self.log(f"{self.spec.name}: {self.row.error}")

    def stop(self, timeout: float = 20) -> None:
        """The stop signal, then wait (SIGKILL after timeout): exit code, time, ru_maxrss."""
        p = self.proc
        if p is None or p.returncode is not None:
            return
        t0 = time.monotonic()
        with contextlib.suppress(OSError):
            os.kill(p.pid, self.spec.stop_signal)
        status, ru = wait4(p.pid, timeout)
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
        status, _ = wait4(p.pid, 3)
        p.returncode = os.waitstatus_to_exitcode(status)


def daemon_specs(sigtrace_path: Path | None, metrics: bool) -> list[Spec]:
    """`sigtrace daemon` (first), sigsnoop and bpftrace on sigtrace's default signals, all
    host-wide; sigtrace_path: `python -m sigtrace` from there, None: as installed."""
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
            ["bpftrace", "-e", bpftrace_program(DEFAULT_SIGNALS)],
            env=bt_env,
            marker=b"ready",
            unavailable="" if shutil.which("bpftrace") else "bpftrace not installed",
        ),
    ]
