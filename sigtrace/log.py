"""sigtrace's own log lines on stderr (not records: those go to stdout or --output).

text (default): `sigtrace daemon: <message>`, `sigtrace daemon: warning: <message>`.
json: one object a line, for log pipelines: `{"time", "level", "logger", "msg", ...fields}`
(RFC 3339 UTC like the records' `time`; `level` is debug, info, warning or error).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

import orjson

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")


class Log:
    def __init__(
        self,
        name: str = "sigtrace",
        fmt: str = "text",
        level: str = "info",
        stream: TextIO | None = None,
    ) -> None:
        if fmt not in FORMATS or level not in LEVELS:
            raise ValueError(f"log format {fmt!r} or level {level!r} unknown")
        self.name, self.fmt = name, fmt
        self.min = LEVELS.index(level)
        self.stream = stream

    def __call__(self, level: str, msg: str, **fields: object) -> None:
        if LEVELS.index(level) < self.min:
            return
        stream = self.stream or sys.stderr
        if self.fmt == "json":
            now = time.time_ns()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 1_000_000_000))
            line = {
                "time": f"{stamp}.{now % 1_000_000_000:09d}Z",
                "level": level,
                "logger": self.name,
                "msg": msg,
                **fields,
            }
            stream.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE).decode())
        else:
            tag = "" if level == "info" else f"{level}: "
            stream.write(f"{self.name}: {tag}{msg}\n")
        stream.flush()

    def debug(self, msg: str, **fields: object) -> None:
        self("debug", msg, **fields)

    def info(self, msg: str, **fields: object) -> None:
        self("info", msg, **fields)

    def warning(self, msg: str, **fields: object) -> None:
        self("warning", msg, **fields)

    def error(self, msg: str, **fields: object) -> None:
        self("error", msg, **fields)


_error_log: Log | None = None


def errors_to(log: Log) -> None:
    """The command's fatal error (`sigtrace: <what>` otherwise) goes to this log instead."""
    global _error_log
    _error_log = log


def fatal(message: str, code: int) -> None:
    """One line on stderr for the error that ends the command."""
    if _error_log is not None and _error_log.fmt == "json":
        _error_log.error(message, exit_code=code)
    else:
        sys.stderr.write(f"sigtrace: {message}\n")
        sys.stderr.flush()
