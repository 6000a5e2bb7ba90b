"""Kernel timestamps (CLOCK_MONOTONIC ns) as RFC 3339 UTC times with nanoseconds, and back. Pure."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime


class Clock:
    """Maps bpf_ktime_get_ns() values to wall time through one offset taken at start."""

    def __init__(self, offset_ns: int | None = None) -> None:
        if offset_ns is None:
            offset_ns = time.time_ns() - time.monotonic_ns()
        self.offset_ns = offset_ns
        self._sec = -1
        self._prefix = ""

    def iso(self, mono_ns: int) -> str:
        wall = mono_ns + self.offset_ns
        sec, ns = divmod(wall, 1_000_000_000)
        if sec != self._sec:  # formatting the seconds once per second keeps this cheap
            self._sec = sec
            self._prefix = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{ns:09d}Z"

    def now_iso(self) -> str:
        return self.iso(time.monotonic_ns())


_NS = 1_000_000_000


def parse_time(text: str) -> int:
    """RFC 3339 UTC with up to 9 fraction digits (`…T19:32:11.168131510Z`) → ns since epoch."""
    stamp, _, frac = text.rstrip("Z").partition(".")
    return _epoch_s(stamp) * _NS + int((frac + "000000000")[:9])


@functools.lru_cache(maxsize=256)
def _epoch_s(stamp: str) -> int:
    # Every record is parsed (host-wide, many a second); the seconds part repeats.
    return int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
