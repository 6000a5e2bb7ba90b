"""sigtrace(1) is made from the click commands: every subcommand and option is in it, and groff
reads it without a warning."""

from __future__ import annotations

import datetime
import shutil
import subprocess

import click
import pytest

from sigtrace.cli import cli
from sigtrace.manpage import render


def page() -> str:
    assert isinstance(cli, click.Group)
    return render(cli, datetime.date(2026, 12, 6))


def test_every_command_and_option_is_in_the_man_page() -> None:
    text = page()
    ctx = click.Context(cli, info_name="sigtrace")
    assert isinstance(cli, click.Group)
    names = cli.list_commands(ctx)
    assert {"daemon", "doctor", "explain", "replay", "schema", "manpage"} <= set(names)
    for name in names:
        cmd = cli.get_command(ctx, name)
        assert cmd is not None and f"\\fBsigtrace {name}\\fR" in text
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("-"):
                    assert opt.replace("-", "\\-") in text or opt in text, (name, opt)
    assert text.startswith('.TH SIGTRACE 1 "2026-12-06" "sigtrace ')


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_groff_reads_it_without_warnings() -> None:
    r = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z"], input=page(), capture_output=True, text=True
    )
    assert (r.returncode, r.stderr) == (0, "")
