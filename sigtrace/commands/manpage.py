"""`sigtrace manpage`: sigtrace(1), made from these commands' own help."""

from __future__ import annotations

import sys

import click


@click.command(
    epilog="""\b
Examples:
  sigtrace manpage | sudo tee /usr/local/share/man/man1/sigtrace.1 >/dev/null
  sigtrace manpage | man -l -
"""
)
def manpage() -> None:
    """Print the man page sigtrace(1), in roff."""
    from sigtrace.cli import cli
    from sigtrace.manpage import render

    assert isinstance(cli, click.Group)
    sys.stdout.write(render(cli))
