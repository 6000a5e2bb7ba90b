"""`sigtrace [OPTIONS]`: trace and print."""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from typing import TextIO

from sigtrace.config import TraceConfig


def run_trace(
    config: TraceConfig,
    backend: str,
    fmt: str | None,
    output: str | None,
    duration: float | None,
    save_raw: str | None,
) -> None:
    from sigtrace.output import make_writer
    from sigtrace.runner import build_session

    stream: TextIO = open(output, "w", buffering=1 << 16) if output else sys.stdout  # noqa: SIM115
    try:
        if fmt is None:
            fmt = "text" if stream.isatty() else "jsonl"
        color = fmt == "text" and stream.isatty() and "NO_COLOR" not in os.environ
        writer = make_writer(fmt, stream, color=color)
        with open(save_raw, "wb") if save_raw else nullcontext() as raw:
            build_session(config, backend, writer, raw=raw).run(duration)
    finally:
        if output:
            stream.close()
