"""JSON Lines: one sigtrace.v1 object per line, encoded by orjson (the stdlib encoder costs
half the time budget of a record). Untrusted text (comm, cmdline) was made printable when it
was read (sigtrace.escape), so no raw control or escape character reaches the log."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from sigtrace.output import Stream


class JsonlWriter:
    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.records = 0
        self._put_bytes: Callable[[bytes], object] | None = getattr(stream, "write_bytes", None)

    def encode(self, rec: Mapping[str, Any]) -> str:
        return orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE).decode()

    def write(self, rec: Mapping[str, Any]) -> None:
        # One whole line per call: the sink writes whole lines only (sigtrace.output.sink).
        if self._put_bytes is not None:  # a LineSink: no decoding to encode again
            self._put_bytes(orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE))
        else:
            self.stream.write(self.encode(rec))
        self.records += 1

    def flush(self) -> None:
        self.stream.flush()
