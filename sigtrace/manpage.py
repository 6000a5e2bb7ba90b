"""sigtrace(1) in roff, made from the click commands themselves: every subcommand, option and
example the `--help` texts show, so the man page cannot drift from the CLI."""

from __future__ import annotations

import datetime
import inspect

import click

from sigtrace import __version__


def _roff(text: str) -> str:
    """Plain text as roff: backslashes, and lines that would read as requests, made literal."""
    out = []
    for line in text.replace("\\", "\\e").splitlines():
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(out)


def _help(cmd: click.Command) -> str:
    return _roff(inspect.cleandoc(cmd.help or ""))


def _options(ctx: click.Context, cmd: click.Command) -> list[str]:
    lines = []
    for param in cmd.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        lines += [".TP", f"\\fB{_roff(names)}\\fR", _roff(help_text or "")]
    return lines


def _epilog(cmd: click.Command) -> list[str]:
    text = (cmd.epilog or "").replace("\b\n", "").strip()
    return [".PP", ".nf", _roff(text), ".fi"] if text else []


def render(group: click.Group, date: datetime.date | None = None) -> str:
    day = (date or datetime.date.today()).isoformat()
    ctx = click.Context(group, info_name="sigtrace")
    lines = [
        f'.TH SIGTRACE 1 "{day}" "sigtrace {__version__}" "User Commands"',
        ".SH NAME",
        "sigtrace \\- who sent which signal to which process, and what the kernel did with it",
        ".SH SYNOPSIS",
        "\\fBsigtrace\\fR [\\fIOPTIONS\\fR]",
        ".br",
        "\\fBsigtrace\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        _help(group),
        ".SH OPTIONS",
        *_options(ctx, group),
        ".SH COMMANDS",
    ]
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None:
            continue
        sub = click.Context(cmd, info_name=name, parent=ctx)
        lines += [".SS", f"\\fBsigtrace {name}\\fR", _help(cmd), *_options(sub, cmd)]
        lines += _epilog(cmd)
    lines += [".SH EXAMPLES", *_epilog(group)[1:]]
    lines += [
        ".SH EXIT STATUS",
        "0 success; 2 bad input; 3 missing privileges; 4 a kernel feature missing; 5 a library",
        "missing; 6 the backend failed; 7 no such container or pod; 8 no container runtime",
        "answers; 10 explain: the stop will not be graceful; 11 writing the records failed;",
        "12 explain: cannot tell with confidence; 70 internal error; 141 stdout's reader gone.",
        ".SH SEE ALSO",
        "The README of the sigtrace sources: the record schema (also \\fBsigtrace schema\\fR),",
        "termination stories, backends and their limits.",
    ]
    return "\n".join(lines) + "\n"
