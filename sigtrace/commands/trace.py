"""`sigtrace [OPTIONS]`: trace and print."""

from __future__ import annotations

import os
from contextlib import nullcontext, suppress

from sigtrace.config import TraceConfig
from sigtrace.errors import OutputError


def run_trace(
    config: TraceConfig,
    backend: str,
    fmt: str | None,
    output: str | None,
    duration: float | None,
    save_raw: str | None,
) -> None:
    from sigtrace.output import make_writer
    from sigtrace.output.sink import LineSink, stdout_sink
    from sigtrace.rawlog import RawFile
    from sigtrace.runner import build_session

    # Both opened before anything is loaded: a path that cannot be written is bad input.
    sink = LineSink.open(output, "--output", append=False) if output else stdout_sink()
    raw = RawFile.open(save_raw) if save_raw else None
    try:
        if fmt is None:
            fmt = "text" if sink.isatty() else "jsonl"
        color = fmt == "text" and sink.isatty() and "NO_COLOR" not in os.environ
        writer = make_writer(fmt, sink, color=color)
        with raw or nullcontext():
            build_session(config, backend, writer, raw=raw).run(duration)
    except BaseException:
        # Flush what can be: the error that ended the run is the one to report.
        with suppress(OutputError):
            sink.close()
        raise
    sink.close()
