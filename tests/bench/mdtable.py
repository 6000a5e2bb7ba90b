"""The benches' tables: Markdown, one row per tracer, a row's error on a line of its own."""

from __future__ import annotations

from collections.abc import Sequence


def head(columns: Sequence[str]) -> list[str]:
    return [row(columns), "|" + "---|" * len(columns)]


def row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def partial(cells: Sequence[str], columns: int) -> str:
    """A row with only its first cells, the rest empty."""
    return row(cells) + " |" * (columns - len(cells))
