"""One tracing run: backend → decode → describe → correlate → writer, until told to stop.

SIGTERM and SIGINT end it gracefully: stop polling, drain what the kernel already handed
over, flush the correlator, report lost records, write the stop record, detach.

When nothing happens it sleeps: with a backend that can wait on a file descriptor besides its
records (the CO-RE ring buffer), it waits without a timeout unless some work is due (a verdict
to give, held-back records, a lost count to read, a ticker's time), and a signal wakes it
through Python's wakeup fd. Other backends poll every POLL_MS.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

from sigtrace import SCHEMA, __version__, features, wire
from sigtrace.backends import Backend
from sigtrace.correlate import Correlator
from sigtrace.enrich import ProcessDescriber
from sigtrace.output import Writer
from sigtrace.procfs import Procfs
from sigtrace.rawlog import ByteStream, RawWriter
from sigtrace.timefmt import Clock

POLL_MS = 100
# A flood overruns the buffer on every poll: one `lost` record a second says it, not thousands
# (and the count, a syscall, is read no more often).
LOST_EVERY_NS = 1_000_000_000

Task = Callable[[], object]  # what it returns is not used
# (interval s, fn): fn runs every interval. (interval s, fn, due): fn runs only when due()
# says it has work (seconds until then; None: none), at most once every interval.
Ticker = tuple[float, Task] | tuple[float, Task, Callable[[], float | None]]


class Session:
    def __init__(
        self,
        backend: Backend,
        writer: Writer,
        why: str = "",
        on_ready: Callable[[], None] | None = None,
        raw: ByteStream | None = None,
        stamp: Mapping[str, object] | None = None,
        describer: ProcessDescriber | None = None,
    ) -> None:
        self.backend = backend
        self.writer = writer
        self.why = why
        self.stamp = stamp or {}
        self.clock = Clock()
        self.describer = describer or ProcessDescriber(Procfs(backend.config.proc_root))
        self.correlator = Correlator(self.clock.iso, self.describer)
        self.observers: list[Callable[[dict[str, Any]], None]] = []
        # run after the last kernel record, before the stop record (e.g. flush verdicts)
        self.on_finish: list[Callable[[], None]] = []
        self.stopping = False
        self.live = False
        self.lost_reported = 0
        self.counts: dict[str, int] = {}  # records written, by type: the stop record's `records`
        self._lost_read_at = -LOST_EVERY_NS
        self.on_ready = on_ready
        self._deferred: list[Callable[[], None]] = []
        # (interval s, fn): housekeeping run from the loop, e.g. following containers
        self.tickers: list[Ticker] = []
        self._next_tick: dict[int, float] = {}
        self._lost_pending = False  # records came since the lost count was last read
        self._wakeup: tuple[int, int, int] | None = None  # (read fd, write fd, the old one)
        self.raw = RawWriter(raw, self.clock.offset_ns) if raw is not None else None
        if self.raw is not None:
            backend.raw_sink = self.raw.write

    def stop(self, *_args: object) -> None:
        self.stopping = True
        self.backend.stopping = True

    def defer(self, fn: Callable[[], None]) -> None:
        """Run fn from the main loop (a signal handler must not touch the output midway)."""
        self._deferred.append(fn)

    def _out(self, rec: dict[str, Any]) -> None:
        if self.stamp:  # stamped(), without a call: this runs for every record
            rec.update(self.stamp)
        self.writer.write(rec)
        self.account(rec)

    def stamped(self, rec: dict[str, Any]) -> dict[str, Any]:
        if self.stamp:
            rec.update(self.stamp)
        return rec

    def account(self, rec: dict[str, Any]) -> None:
        """A record is out: counted for the stop record, shown to the observers."""
        kind = rec["type"]
        if kind not in ("start", "stop"):
            self.counts[kind] = self.counts.get(kind, 0) + 1
        for observe in self.observers:
            observe(rec)

    def emit_extra(self, rec: dict[str, Any]) -> None:
        """A record an observer made from other records (a verdict): out like the rest."""
        self._out(rec)

    def _emit(self, rec: wire.Record) -> None:
        out = self._out
        for o in self.correlator.feed(rec):
            out(o)
        if isinstance(rec, wire.Exit) and rec.task.pid is not None:
            self.describer.forget(rec.task.pid)

    def _check_lost(self, final: bool = False) -> None:
        """Records are lost only while the buffer is full, so only after records came is
        there a count to read: at most once a second."""
        now = time.monotonic_ns()
        if not final and (not self._lost_pending or now - self._lost_read_at < LOST_EVERY_NS):
            return
        self._lost_pending = False
        self._lost_read_at = now
        total = self.backend.lost_total()
        if total > self.lost_reported:
            self._out(self.correlator.lost(total - self.lost_reported, now))
            self.lost_reported = total

    def _start_record(self) -> dict[str, Any]:
        cfg = self.backend.config
        return {
            "schema": SCHEMA,
            "type": "start",
            "time": self.clock.now_iso(),
            "version": __version__,
            "backend": self.backend.name,
            "why": self.why,
            "filters": cfg.filters(),
            "cannot_see": self.backend.cannot_see(),
            "kernel": features.kernel_release(),
            "host": os.uname().nodename,
        }

    def run(self, duration: float | None = None) -> int:
        old = {s: signal.signal(s, self.stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.backend.open()
            self._wake_on_signals()
            self.live = True
            self._out(self._start_record())
            self.writer.flush()
            if self.on_ready:
                self.on_ready()
            self._loop(duration)
            self._finish()
        finally:
            self.live = False
            self._unwake()
            self.backend.close()
            for s, h in old.items():
                signal.signal(s, h)
        return 0

    def _wake_on_signals(self) -> None:
        """A wait without a timeout must end at SIGTERM or SIGHUP: Python runs its handler but
        retries the wait, unless a wakeup fd the backend also waits on becomes readable."""
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if self.backend.wake_on(r):
                old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
                self._wakeup = (r, w, old)
                return
        except ValueError:  # not the main thread: no signal handlers either
            pass
        os.close(r)
        os.close(w)

    def _unwake(self) -> None:
        if self._wakeup is not None:
            r, w, old = self._wakeup
            self._wakeup = None
            signal.set_wakeup_fd(old)
            os.close(r)
            os.close(w)

    def _loop(self, duration: float | None) -> None:
        deadline = None if duration is None else time.monotonic() + duration
        flushed = True  # the writer holds nothing: a wait may be long
        held_since: float | None = None  # when the writer took its oldest unflushed record
        while not self.stopping:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            wait = self._wait_s(now, deadline, flushed)
            timeout = -1 if wait is None else math.ceil(wait * 1000)
            if timeout < 0:
                self.correlator.idle()
            n = self.backend.poll(timeout, self._emit)
            if n:
                self._lost_pending = True
            for out in self.correlator.flush(time.monotonic_ns()):
                self._out(out)
            self._check_lost()
            while self._deferred:
                self._deferred.pop(0)()
            self._tick()
            # After a quiet poll, so that what a ticker wrote (a verdict) waits for no record;
            # and at least every POLL_MS while records trickle in without a pause.
            after = time.monotonic()
            if n and held_since is None:
                held_since = after
            flushed = n == 0 or after - (held_since or after) >= POLL_MS / 1000
            if flushed:
                self.writer.flush()
                held_since = None

    def _wait_s(self, now: float, deadline: float | None, flushed: bool) -> float | None:
        """How long the next poll may wait for records (None: until one comes). Right after
        records, POLL_MS at most: the writer flushes when they stop coming."""
        waits = [] if flushed and self._wakeup is not None else [POLL_MS / 1000]
        if deadline is not None:
            waits.append(deadline - now)
        if self.correlator.pending():
            waits.append(POLL_MS / 1000)
        if self._lost_pending:
            waits.append((self._lost_read_at + LOST_EVERY_NS) / 1e9 - now)
        if self._deferred:
            waits.append(0.0)
        for i, ticker in enumerate(self.tickers):
            next_tick = self._next_tick.get(i, 0.0) - now
            if len(ticker) == 2:
                waits.append(next_tick)
            elif (due := ticker[2]()) is not None:
                waits.append(max(due, next_tick))
        return max(0.0, min(waits)) if waits else None

    def _tick(self) -> None:
        now = time.monotonic()
        for i, ticker in enumerate(self.tickers):
            if now < self._next_tick.get(i, 0.0):
                continue
            if len(ticker) == 3 and ticker[2]() != 0.0:
                continue  # nothing to do yet, or at all
            self._next_tick[i] = now + ticker[0]
            ticker[1]()

    def _finish(self) -> None:
        self.backend.drain(self._emit)
        for out in self.correlator.flush(None):
            self._out(out)
        self._check_lost(final=True)
        for fn in self.on_finish:
            fn()
        self._out(
            {
                "schema": SCHEMA,
                "type": "stop",
                "time": self.clock.now_iso(),
                "records": dict(self.counts),
                "lost": self.lost_reported,
            }
        )
        self.writer.flush()
        if self.raw is not None:
            self.raw.flush()
