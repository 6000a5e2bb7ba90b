#!/usr/bin/env python3
"""The CO-RE consumer's cost per record, without the kernel (a helper; not a test).

Replays a recording (`sigtrace --save-raw`) through the session `sigtrace --signal all
--output FILE` builds: the recorded records are laid out as a BPF ring buffer's data pages
(8-byte headers, 8-byte aligned) and read by the same MappedRing.consume → CoreBackend
decode → Correlator → observers (stories) → JSONL writer → file on tmpfs. Only the kernel
and the ring's epoll wait are left out, so the numbers are the consumer's alone: µs per
record (CPU time of this process), and the stages timed one by one over the same records.

usage: .venv/bin/python tests/bench/consumer_replay.py RECORDING [--reps 3] [--profile]
(SIGTRACE_TREE=DIR: DIR's sigtrace instead of this tree's)
Record one (root): sigtrace --signal all --output /dev/null --save-raw R while
tests/bench/storm.c runs.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

REPO = Path(__file__).resolve().parent.parent.parent
# SIGTRACE_TREE: replay through another copy of sigtrace (a commit's `git archive`), to compare
sys.path.insert(0, os.environ.get("SIGTRACE_TREE", str(REPO)))

from sigtrace import backends, rawlog, ringbuf  # noqa: E402
from sigtrace.backends import Emit  # noqa: E402
from sigtrace.backends.core import CoreBackend  # noqa: E402
from sigtrace.config import TraceConfig  # noqa: E402
from sigtrace.output import make_writer  # noqa: E402
from sigtrace.output.sink import LineSink  # noqa: E402
from sigtrace.runner import build_session  # noqa: E402
from sigtrace.session import Session  # noqa: E402


def ring_layout(datas: list[bytes]) -> tuple[bytes, int, int]:
    """(the mapping: producer page, data pages; the data's size; where the records end)"""
    page = 4096
    body = bytearray()
    for d in datas:
        body += ringbuf._LEN.pack(len(d)) + b"\0\0\0\0" + d
        body += b"\0" * (-len(body) % 8)
    size = 4096
    while size < len(body) + 8:
        size <<= 1
    data = bytearray(page + size)
    ringbuf._POS.pack_into(data, 0, len(body))  # the producer's position
    data[page : page + len(body)] = body
    return bytes(data), size, len(body)


class RecordedRing(ringbuf.MappedRing):
    """A ring buffer's mapping filled once with the recorded records (no wrap, no epoll)."""

    def __init__(
        self,
        layout: tuple[bytes, int, int],
        on_record: Callable[[bytes], None],
        on_batch: Callable[[list[bytes]], None] | None,
        should_stop: Callable[[], bool],
    ) -> None:
        self._data, size, self.end = layout
        self.page, self.mask, self.budget = 4096, size - 1, 8192
        self.on_record, self.should_stop = on_record, should_stop  # an older MappedRing's
        self.on_batch = on_batch
        self._cons = bytearray(8)
        self._gather = False

    def wake_on(self, fd: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def done(self) -> bool:
        return ringbuf._POS.unpack_from(self._cons)[0] >= self.end


class ReplayCore(CoreBackend):
    layout: ClassVar[tuple[bytes, int, int]] = (b"", 0, 0)
    session: ClassVar[Session | None] = None

    def open(self) -> None:
        batch = getattr(self, "_on_batch", None)  # None: a tree from before batches
        self.rb = RecordedRing(self.layout, self._on_record, batch, lambda: self.stopping)

    def poll(self, timeout_ms: int, emit: Emit) -> int:
        n = super().poll(0, emit)
        assert isinstance(self.rb, RecordedRing)
        if self.rb.done() and self.session is not None:
            self.session.stop()
        return n

    def wake_on(self, fd: int) -> bool:
        return False

    def drain(self, emit: Emit) -> int:
        return 0

    def lost_total(self) -> int:
        return 0

    def close(self) -> None:
        pass


def replay_once(datas: list[bytes], out: Path, profile: cProfile.Profile | None) -> float:
    """CPU seconds for the whole session over the records."""
    ReplayCore.layout = ring_layout(datas)  # laid out before the clock starts
    orig = backends.select
    backends.select = lambda name, config: (ReplayCore, "replay")  # type: ignore[assignment]
    try:
        sink = LineSink.open(str(out), "--output", append=False)
        config = TraceConfig(signals=frozenset(range(1, 65)))
        session = build_session(config, "core", make_writer("jsonl", sink))
        ReplayCore.session = session
        t = time.process_time()
        if profile:
            profile.enable()
        session.run()
        if profile:
            profile.disable()
        cpu = time.process_time() - t
        sink.close()
    finally:
        backends.select = orig  # type: ignore[assignment]
    return cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("recording")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--top", type=int, default=30)
    opts = ap.parse_args()
    with open(opts.recording, "rb") as f:
        _, recs = rawlog.read(f)
        datas = list(recs)
    tmp = Path(tempfile.mkdtemp(prefix="consumer-replay-", dir="/dev/shm"))
    out = tmp / "out.jsonl"
    try:
        cpus = [replay_once(datas, out, None) for _ in range(opts.reps)]
        lines = out.read_bytes().count(b"\n")
        us = [c / len(datas) * 1e6 for c in cpus]
        med = statistics.median(us)
        print(
            f"{len(datas):,} records -> {lines:,} lines: {med:.2f} µs/record, least {min(us):.2f}"
            f" (runs {', '.join(f'{u:.2f}' for u in us)}) = {1e6 / med:,.0f} records/s"
            f" on one core; load {os.getloadavg()[0]:.1f}"
        )
        if opts.profile:
            prof = cProfile.Profile()
            replay_once(datas, out, prof)
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(opts.top)
            print("\n".join(ln for ln in buf.getvalue().splitlines() if ln.strip()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
