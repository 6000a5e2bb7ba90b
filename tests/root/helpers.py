"""What the root tests share: workloads (Agent, flood, pidns_init, end_three_ways), the
fixtures' types (StartTracer, Agents) and constants (NOBODY, ME, SIGRTMIN_2). Test modules
import them from here; tests/tracing.py has what the root, Docker and containerd tests all
share (Tracer, record selectors)."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.tracing import LINE_TIMEOUT_S, Record, Tracer, wait_for

# Runs a command as nobody, without root's groups or capabilities.
NOBODY = ("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups")
ME = os.getpid()  # this pytest process: the sender of the tests' own kill()s
SIGRTMIN_2 = 36  # what sigtrace (as glibc: SIGRTMIN is 34) names SIGRTMIN+2


class StartTracer(Protocol):
    def __call__(
        self,
        signals: Iterable[str] = ...,
        pids: Iterable[int] = ...,
        extra: Iterable[str] = ...,
        wait: bool = ...,
    ) -> Tracer: ...


FLOOD = """
import os, sys, time
pid, sig, end = int(sys.argv[1]), int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
os.write(1, b"go\\n")
while time.monotonic() < end:
    os.kill(pid, sig)
"""


@contextlib.contextmanager
def flood(pid: int, sig: int, seconds: float) -> Iterator[subprocess.Popen[bytes]]:
    """A process that sends `sig` to `pid` as fast as it can for `seconds`; killed on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-c", FLOOD, str(pid), str(int(sig)), str(seconds)],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"go\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def children(pid: int, n: int) -> list[int]:
    """The children of `pid`, once it has `n`."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    wait_for(lambda: len(path.read_text().split()) == n, what=f"{n} children of {pid}")
    return [int(w) for w in path.read_text().split()]


@contextlib.contextmanager
def pidns_init(script: str, n: int) -> Iterator[tuple[subprocess.Popen[bytes], int, list[int]]]:
    """`sh -c script` as PID 1 of a new pid namespace, once it has `n` children: (unshare,
    the init's host pid, its children's). Killed on exit (--kill-child takes the rest)."""
    init = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "sh", "-c", script])
    try:
        sh = children(init.pid, 1)[0]
        yield init, sh, children(sh, n)
    finally:
        if init.poll() is None:
            init.kill()
            init.wait()


# --- the workload ---------------------------------------------------------------------------

AGENT = r"""
import os, signal, sys

def signo(name):
    name = name.upper().removeprefix("SIG")
    if name.startswith("RTMIN+"):
        return signal.SIGRTMIN + int(name[6:])
    return int(name) if name.isdigit() else signal.Signals["SIG" + name].value

def handler(sig, frame):
    os.write(1, b"got %d\n" % sig)

for spec in sys.argv[1:]:
    name, _, how = spec.partition("=")
    sig = signo(name)
    if how == "handler":
        signal.signal(sig, handler)
    elif how == "ignore":
        signal.signal(sig, signal.SIG_IGN)
    elif how == "default":
        signal.signal(sig, signal.SIG_DFL)
    elif how == "block":
        signal.pthread_sigmask(signal.SIG_BLOCK, {sig})
    else:
        raise SystemExit("bad spec " + spec)

with open("/proc/self/status") as f:
    nspid = [l.split()[1:] for l in f if l.startswith("NSpid:")][0]
os.write(1, ("ready %s %s\n" % (nspid[0], nspid[-1])).encode())

for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    if cmd[0] == "kill":
        try:
            os.kill(int(cmd[1]), signo(cmd[2]))
            os.write(1, b"ok\n")
        except OSError as e:
            os.write(1, b"error %d\n" % e.errno)
    elif cmd[0] == "pending":
        os.write(1, ("pending %s\n" % sorted(int(s) for s in signal.sigpending())).encode())
    elif cmd[0] == "ping":
        os.write(1, b"pong\n")
    elif cmd[0] == "exit":
        os._exit(int(cmd[1]))
"""


class Agent:
    """A python workload with given dispositions (`TERM=handler`, `USR1=ignore`, `TERM=block`).

    Its stdout lines are read by a thread into a queue, so `expect()` can wait with a timeout.
    With `pidns=True` it runs as PID 1 of a new pid namespace (`unshare --pid --fork`).
    """

    def __init__(
        self,
        script: Path,
        *specs: str,
        pidns: bool = False,
        process_group: int | None = None,
    ) -> None:
        cmd = [sys.executable, str(script), *specs]
        self.pidns = pidns
        self.pid = 0
        if pidns:
            cmd = ["unshare", "--pid", "--fork", *cmd]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            process_group=process_group,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            words = self.expect("ready").split()
        except BaseException:
            self.close()
            raise
        self.pid = int(words[1])  # host pid
        self.ns_pid = int(words[2])  # pid in its own namespace
        if not pidns:
            assert self.pid == self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float = LINE_TIMEOUT_S) -> str:
        """The next output line; it must start with `prefix`."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"workload {self.proc.args}: no {prefix!r} within {timeout} s")
        assert line is not None, f"workload ended while waiting for {prefix!r}"
        assert line.startswith(prefix), f"expected {prefix!r}, got {line!r}"
        return line

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def run(self, command: str, reply: str = "ok") -> str:
        self.send(command)
        return self.expect(reply)

    def alive(self) -> bool:
        """Answers a ping: proves the process is still running (and not stuck)."""
        self.send("ping")
        self.expect("pong")
        return self.proc.poll() is None

    def wait(self, timeout: float = LINE_TIMEOUT_S) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        # A pidns agent is a child of unshare: kill it first (unshare then exits by itself),
        # as killing unshare alone would leave it running, orphaned.
        if self.pidns and self.pid and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


Agents = Callable[..., Agent]  # the agents fixture: agents("TERM=handler", ...) -> Agent


def end_three_ways(
    agents: Agents, start: Callable[[list[int]], Any]
) -> tuple[list[Record], Agent, Agent, Agent]:
    """Three agents traced by start(pids) (it returns a tracer with stop()): one handles
    SIGTERM and exits 0, one dies of SIGTERM (143), one of SIGKILL (137).
    Returns (records, clean, termed, killed)."""
    clean, termed, killed = agents("TERM=handler"), agents(), agents()
    t = start([clean.pid, termed.pid, killed.pid])
    os.kill(clean.pid, signal.SIGTERM)
    clean.expect("got 15")
    clean.send("exit 0")
    assert clean.wait() == 0
    os.kill(termed.pid, signal.SIGTERM)
    assert termed.wait() == -signal.SIGTERM
    os.kill(killed.pid, signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    return t.stop(), clean, termed, killed
