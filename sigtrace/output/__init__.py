"""Writers: one record in, one line out."""

from __future__ import annotations

from typing import Protocol, TextIO


class Writer(Protocol):
    def write(self, rec: dict) -> None: ...
    def flush(self) -> None: ...


def make_writer(fmt: str, stream: TextIO, color: bool = False) -> Writer:
    if fmt == "jsonl":
        from sigtrace.output.jsonl import JsonlWriter

        return JsonlWriter(stream)
    from sigtrace.output.text import TextWriter

    return TextWriter(stream, color=color)
