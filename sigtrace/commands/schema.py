"""`sigtrace schema`: the JSON Schema of the records, for log pipelines and their tests."""

from __future__ import annotations

import sys

import click


@click.command(
    epilog="""\b
Examples:
  sigtrace schema > sigtrace.v1.schema.json
  sigtrace schema --strict     # exactly this version's fields and values (what the tests use)
"""
)
@click.option(
    "--strict",
    is_flag=True,
    help="No unknown field or enumerated value (later v1 versions may add both).",
)
def schema(strict: bool) -> None:
    """Print the JSON Schema (draft 2020-12) of sigtrace.v1 records."""
    from sigtrace import schema as source

    sys.stdout.write(source.render(strict=True) if strict else source.published())
