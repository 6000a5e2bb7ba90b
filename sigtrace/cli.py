"""Command line. `sigtrace [OPTIONS]` traces; `sigtrace doctor` says what would run and why.

Every error is one line on stderr, `sigtrace: <what>`, with its own exit code
(sigtrace/errors.py); never a traceback for bad input or a missing kernel feature.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from typing import TextIO

import click

from sigtrace import signals
from sigtrace.config import TraceConfig
from sigtrace.errors import SigtraceError, UsageError

INTERNAL_ERROR = 70  # EX_SOFTWARE

EXAMPLES = """
\b
Examples:
  sudo sigtrace                           # SIGTERM/KILL/INT/QUIT/HUP, host-wide, as text
  sudo sigtrace --signal all --format jsonl --output /var/log/sigtrace.jsonl
  sudo sigtrace --pid 4242 --signal TERM --signal RTMIN+2
  sudo sigtrace --duration 30 | jq 'select(.outcome=="ignored")'
  sudo sigtrace doctor                    # kernel features, privileges, chosen backend
"""


def _config(
    pids: tuple[int, ...], sigs: tuple[str, ...], verbose: bool, proc_root: str, sys_root: str
) -> TraceConfig:
    for p in pids:
        if p <= 0:
            raise UsageError(f"--pid takes a positive process id, not {p}")
    return TraceConfig(
        signals=signals.parse_specs(sigs),
        pids=tuple(pids),
        verbose=verbose,
        proc_root=proc_root,
        sys_root=sys_root,
    )


@click.group(
    invoke_without_command=True,
    epilog=EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--pid",
    "pids",
    type=int,
    multiple=True,
    metavar="PID",
    help="Only signals sent by or to this process or thread (repeatable).",
)
@click.option(
    "--signal",
    "-s",
    "sigs",
    multiple=True,
    metavar="SIG",
    help="TERM, SIGTERM, 15, RTMIN+n or all (repeatable). Default: TERM, KILL, INT, QUIT, HUP.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "jsonl"]),
    default=None,
    help="Default: text on a terminal, jsonl otherwise.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write records here instead of stdout.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Stop after this long.",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "core"]),
    default="auto",
    show_default=True,
    help="How to trace; auto picks one and says why.",
)
@click.option("--verbose", "-v", is_flag=True, help="Show libbpf's log.")
@click.option(
    "--save-raw",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also record the kernel's raw records here, for `sigtrace replay`.",
)
@click.option(
    "--proc-root",
    envvar="SIGTRACE_PROC_ROOT",
    default="/proc",
    show_default=True,
    help="The host's /proc (a DaemonSet mounts it elsewhere).",
)
@click.option(
    "--sys-root",
    envvar="SIGTRACE_SYS_ROOT",
    default="/sys",
    show_default=True,
    help="The host's /sys (BTF, tracefs, cgroups).",
)
@click.version_option(package_name="sigtrace")
@click.pass_context
def cli(
    ctx: click.Context,
    pids: tuple[int, ...],
    sigs: tuple[str, ...],
    fmt: str | None,
    output: str | None,
    duration: float | None,
    backend: str,
    verbose: bool,
    proc_root: str,
    sys_root: str,
    save_raw: str | None,
) -> None:
    """Trace signals and report what the kernel did with each one.

    Reports who sent each signal, to which process, and the kernel's own verdict:
    delivered, ignored (and why: PID 1 without a handler, SIG_IGN, default ignore),
    pending (blocked), merged with one already pending, or failed; then what followed.
    """
    from sigtrace.backends import select
    from sigtrace.output import make_writer
    from sigtrace.session import Session

    ctx.obj = {"proc_root": proc_root, "sys_root": sys_root}
    if ctx.invoked_subcommand is not None:
        return
    config = _config(pids, sigs, verbose, proc_root, sys_root)
    cls, why = select(backend, config)
    if verbose or backend == "auto":
        click.echo(f"sigtrace: {why}", err=True)
    stream: TextIO = open(output, "w", buffering=1 << 16) if output else sys.stdout  # noqa: SIM115
    try:
        if fmt is None:
            fmt = "text" if stream.isatty() else "jsonl"
        color = fmt == "text" and stream.isatty() and "NO_COLOR" not in os.environ
        writer = make_writer(fmt, stream, color=color)
        with open(save_raw, "wb") if save_raw else nullcontext() as raw:
            Session(cls(config), writer, why=why, raw=raw).run(duration)
    finally:
        if output:
            stream.close()


@cli.command(epilog="\b\nExamples:\n  sudo sigtrace doctor\n  sigtrace doctor --format jsonl")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True
)
@click.pass_context
def doctor(ctx: click.Context, fmt: str) -> None:
    """Kernel features, privileges, and which backend would run and why."""
    from sigtrace.doctor import report

    report(fmt, sys.stdout, TraceConfig(**(ctx.obj or {})))


@cli.command(
    epilog="\b\nExamples:\n  sigtrace replay incident.raw\n  sigtrace replay --format text x.raw"
)
@click.argument("recording", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--format", "fmt", type=click.Choice(["text", "jsonl"]), default="jsonl", show_default=True
)
def replay(recording: str, fmt: str) -> None:
    """Classify a recording made with --save-raw, without root or BPF."""
    from sigtrace.output import make_writer
    from sigtrace.replay import replay_file

    replay_file(recording, make_writer(fmt, sys.stdout))


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="sigtrace", standalone_mode=False)
    except SigtraceError as exc:
        click.echo(f"sigtrace: {exc.message}", err=True)
        sys.exit(exc.code)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"sigtrace: {exc.format_message()}", err=True)
        sys.exit(UsageError.code)
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except Exception as exc:
        if os.environ.get("SIGTRACE_DEBUG"):
            raise
        click.echo(
            f"sigtrace: internal error: {type(exc).__name__}: {exc} (SIGTRACE_DEBUG=1 shows where)",
            err=True,
        )
        sys.exit(INTERNAL_ERROR)
    sys.exit(0)
