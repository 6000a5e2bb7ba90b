"""One tracing run: backend → decode → describe → correlate → writer, until told to stop.

SIGTERM and SIGINT end it gracefully: stop polling, drain what the kernel already handed
over, flush the correlator, report lost records, write the stop record, detach.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from sigtrace import SCHEMA, __version__, features, wire
from sigtrace.backends import Backend
from sigtrace.correlate import Correlator
from sigtrace.output import Writer
from sigtrace.procfs import ProcessDescriber, Procfs
from sigtrace.rawlog import ByteStream, RawWriter
from sigtrace.timefmt import Clock

POLL_MS = 100
# A flood overruns the buffer on every poll: one `lost` record a second says it, not thousands.
LOST_EVERY_NS = 1_000_000_000


class Session:
    def __init__(
        self,
        backend: Backend,
        writer: Writer,
        why: str = "",
        on_ready: Callable[[], None] | None = None,
        raw: ByteStream | None = None,
        stamp: dict | None = None,
        describer: ProcessDescriber | None = None,
    ) -> None:
        self.backend = backend
        self.writer = writer
        self.why = why
        self.stamp = stamp or {}
        self.clock = Clock()
        self.describer = describer or ProcessDescriber(Procfs(backend.config.proc_root))
        self.correlator = Correlator(self.clock.iso, self.describer)
        self.observers: list[Callable[[dict], None]] = []
        # run after the last kernel record, before the stop record (e.g. flush verdicts)
        self.on_finish: list[Callable[[], None]] = []
        self.stopping = False
        self.live = False
        self.lost_reported = 0
        self.counts: dict[str, int] = {}  # records written, by type: the stop record's `records`
        self._lost_at = -LOST_EVERY_NS
        self.on_ready = on_ready
        self._deferred: list[Callable[[], None]] = []
        # (interval s, fn): housekeeping run from the loop, e.g. following containers
        self.tickers: list[tuple[float, Callable[[], object]]] = []
        self._next_tick: dict[int, float] = {}
        self.raw = RawWriter(raw, self.clock.offset_ns) if raw is not None else None
        if self.raw is not None:
            backend.raw_sink = self.raw.write

    def stop(self, *_args: object) -> None:
        self.stopping = True
        self.backend.stopping = True

    def defer(self, fn: Callable[[], None]) -> None:
        """Run fn from the main loop (a signal handler must not touch the output midway)."""
        self._deferred.append(fn)

    def _out(self, rec: dict) -> None:
        self.writer.write(self.stamped(rec))
        self.account(rec)

    def stamped(self, rec: dict) -> dict:
        if self.stamp:
            rec.update(self.stamp)
        return rec

    def account(self, rec: dict) -> None:
        """A record is out: counted for the stop record, shown to the observers."""
        kind = rec["type"]
        if kind not in ("start", "stop"):
            self.counts[kind] = self.counts.get(kind, 0) + 1
        for observe in self.observers:
            observe(rec)

    def emit_extra(self, rec: dict) -> None:
        """A record an observer made from other records (a verdict): out like the rest."""
        self._out(rec)

    def _emit(self, rec: wire.Record) -> None:
        for out in self.correlator.feed(rec):
            self._out(out)
        if isinstance(rec, wire.Exit):
            self.describer.forget(rec.task.pid)

    def _check_lost(self, final: bool = False) -> None:
        now = time.monotonic_ns()
        if not final and now - self._lost_at < LOST_EVERY_NS:
            return
        total = self.backend.lost_total()
        if total > self.lost_reported:
            self._out(self.correlator.lost(total - self.lost_reported, now))
            self.lost_reported = total
            self._lost_at = now

    def _start_record(self) -> dict:
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
            self.live = True
            self._out(self._start_record())
            self.writer.flush()
            if self.on_ready:
                self.on_ready()
            self._loop(duration)
            self._finish()
        finally:
            self.live = False
            self.backend.close()
            for s, h in old.items():
                signal.signal(s, h)
        return 0

    def _loop(self, duration: float | None) -> None:
        deadline = None if duration is None else time.monotonic() + duration
        while not self.stopping:
            timeout = POLL_MS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                timeout = max(1, min(POLL_MS, int(left * 1000)))
            n = self.backend.poll(timeout, self._emit)
            for out in self.correlator.flush(time.monotonic_ns()):
                self._out(out)
            self._check_lost()
            if n == 0:
                self.writer.flush()
            while self._deferred:
                self._deferred.pop(0)()
            self._tick()

    def _tick(self) -> None:
        now = time.monotonic()
        for i, (interval, fn) in enumerate(self.tickers):
            if now >= self._next_tick.get(i, 0.0):
                self._next_tick[i] = now + interval
                fn()

    def _finish(self) -> None:
        drain = getattr(self.backend, "drain", None)
        if drain is not None:
            drain(self._emit)
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
