"""JSON Lines: one sigtrace.v1 object per line, encoded by orjson (the stdlib encoder costs
half the time budget of a record). Untrusted text (comm, cmdline) was made printable when it
was read (sigtrace.escape), so no raw control or escape character reaches the log."""

from __future__ import annotations

from typing import TextIO

import orjson


class JsonlWriter:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.records = 0

    def write(self, rec: dict) -> None:
        # One write call per whole line: a reader never sees half a record from us.
        self.stream.write(orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE).decode())
        self.records += 1

    def flush(self) -> None:
        self.stream.flush()
