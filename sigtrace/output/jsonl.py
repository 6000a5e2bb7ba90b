"""JSON Lines: one sigtrace.v1 object per line. ensure_ascii keeps untrusted text (comm,
cmdline) free of raw control and escape characters for whoever cats the log."""

from __future__ import annotations

import json
from typing import TextIO

_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


class JsonlWriter:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.records = 0

    def write(self, rec: dict) -> None:
        # One write call per whole line: a reader never sees half a record from us.
        self.stream.write(_encode(rec) + "\n")
        self.records += 1

    def flush(self) -> None:
        self.stream.flush()
