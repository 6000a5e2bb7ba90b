"""Writers: one record in, one line out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Stream(Protocol):
    """Where a writer's lines go: sigtrace.output.sink.LineSink, or a text file."""

    def write(self, text: str, /) -> object: ...
    def flush(self) -> None: ...
    def isatty(self) -> bool: ...


class Writer(Protocol):
    def write(self, rec: Mapping[str, Any]) -> None: ...
    def flush(self) -> None: ...


def make_writer(fmt: str, stream: Stream, color: bool = False) -> Writer:
    if fmt == "jsonl":
        from sigtrace.output.jsonl import JsonlWriter

        return JsonlWriter(stream)
    from sigtrace.output.text import TextWriter

    return TextWriter(stream, color=color)
