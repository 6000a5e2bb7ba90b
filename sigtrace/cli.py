"""Command line. `sigtrace [OPTIONS]` traces; subcommands live in sigtrace/commands/.

Every error is one line on stderr, `sigtrace: <what>`, with its own exit code
(sigtrace/errors.py); never a traceback for bad input or a missing kernel feature.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import ClassVar

import click

from sigtrace.commands.options import Seconds, make_config, trace_options
from sigtrace.errors import ReaderGone, SigtraceError, UsageError

INTERNAL_ERROR = 70  # EX_SOFTWARE

EXAMPLES = """
\b
Examples:
  sudo sigtrace                           # SIGTERM/KILL/INT/QUIT/HUP, host-wide, as text
  sudo sigtrace --signal all --format jsonl --output /var/log/sigtrace.jsonl
  sudo sigtrace --pid 4242 --signal TERM --signal RTMIN+2
  sudo sigtrace --duration 30 | jq 'select(.outcome=="ignored")'
  sudo sigtrace doctor                    # kernel features, privileges, chosen backend
  sudo sigtrace daemon --metrics :9090    # on every node: JSONL on stdout, metrics
"""


class LazyGroup(click.Group):
    """Subcommands imported when named: `sigtrace` itself starts tracing without loading
    explain's predictor, the daemon's metrics server or doctor (time to first record)."""

    LAZY: ClassVar[dict[str, str]] = {
        "daemon": "sigtrace.commands.daemon",
        "doctor": "sigtrace.commands.doctor",
        "explain": "sigtrace.commands.explain",
        "manpage": "sigtrace.commands.manpage",
        "replay": "sigtrace.commands.replay",
        "schema": "sigtrace.commands.schema",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY and name not in self.commands:
            self.add_command(getattr(importlib.import_module(self.LAZY[name]), name))
        return super().get_command(ctx, name)


@click.group(
    cls=LazyGroup,
    invoke_without_command=True,
    epilog=EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@trace_options
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
    type=Seconds(),
    default=None,
    metavar="SECONDS",
    help="Stop after this long.",
)
@click.option(
    "--save-raw",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also record the kernel's raw records here, for `sigtrace replay`.",
)
@click.version_option(package_name="sigtrace")
@click.pass_context
def cli(
    ctx: click.Context,
    /,
    fmt: str | None,
    output: str | None,
    duration: float | None,
    save_raw: str | None,
    backend: str,
    **opts: object,
) -> None:
    """Trace signals and report what the kernel did with each one.

    Reports who sent each signal, to which process, and the kernel's own verdict:
    delivered, ignored (and why: PID 1 without a handler, SIG_IGN, default ignore),
    pending (blocked), merged with one already pending, or failed; then what followed.
    """
    if ctx.invoked_subcommand is not None:
        return
    from sigtrace.commands.trace import run_trace

    run_trace(make_config(**opts), backend, fmt, output, duration, save_raw)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    # Until a run installs its own handler: a stop request while loading exits cleanly. In a
    # container this process is PID 1, and the kernel would drop a SIGTERM without a handler.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        cli.main(args=argv, prog_name="sigtrace", standalone_mode=False)
    except (ReaderGone, BrokenPipeError):
        # The reader went away (`| head`): the end it asked for, not an error of ours. Quiet,
        # with a shell's status for SIGPIPE; stdout to /dev/null, so no flush at exit fails.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(ReaderGone.code)
    except SigtraceError as exc:
        from sigtrace.log import fatal

        fatal(exc.message, exc.code)
        sys.exit(exc.code)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"sigtrace: {exc.format_message()}", err=True)
        sys.exit(UsageError.code)
    except Exception as exc:
        if os.environ.get("SIGTRACE_DEBUG"):
            raise
        click.echo(
            f"sigtrace: internal error: {type(exc).__name__}: {exc} (SIGTRACE_DEBUG=1 shows where)",
            err=True,
        )
        sys.exit(INTERNAL_ERROR)
    sys.exit(0)
