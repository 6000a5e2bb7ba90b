"""`sigtrace daemon`: host-wide, on every node. JSONL on stdout (or --output, reopened on
SIGHUP for logrotate), logs on stderr (text, or JSON lines with --log-format json), the node
name in every record, a graceful SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import sys

import click

from sigtrace.commands.options import make_config, trace_options
from sigtrace.log import FORMATS, LEVELS, Log, errors_to


@click.command(
    epilog="""\b
Examples:
  sudo sigtrace daemon                                  # JSONL on stdout
  sudo sigtrace daemon --output /var/log/sigtrace/sigtrace.jsonl
  NODE_NAME=node-3 sigtrace daemon --metrics 0.0.0.0:9090
  sigtrace daemon --log-format json 2>>/var/log/sigtrace/daemon.log
"""
)
@trace_options
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Append records here (reopened on SIGHUP) instead of stdout.",
)
@click.option(
    "--node-name",
    envvar="NODE_NAME",
    default=None,
    help="Put in every record as `node` [default: $NODE_NAME, else the hostname].",
)
@click.option(
    "--metrics",
    "metrics_listen",
    default=None,
    metavar="[HOST:]PORT",
    help="Serve Prometheus metrics and /healthz here (HOST defaults to 127.0.0.1).",
)
@click.option(
    "--log-format",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    envvar="SIGTRACE_LOG_FORMAT",
    help="The daemon's own log lines on stderr: text, or one JSON object a line.",
)
@click.option(
    "--log-level",
    type=click.Choice(LEVELS),
    default="info",
    show_default=True,
    envvar="SIGTRACE_LOG_LEVEL",
    help="Leave out log lines below this level.",
)
def daemon(
    output: str | None,
    node_name: str | None,
    metrics_listen: str | None,
    log_format: str,
    log_level: str,
    backend: str,
    **opts: object,
) -> None:
    """Trace host-wide until SIGTERM/SIGINT, writing JSONL for log pipelines."""
    from sigtrace.output.jsonl import JsonlWriter
    from sigtrace.output.reopen import ReopeningFile
    from sigtrace.runner import build_session

    log = Log("sigtrace daemon", log_format, log_level)
    errors_to(log)  # a fatal error is a log line too, in the same format
    # On every node, all the time: no syscall hook by default (see --syscalls).
    config = make_config(**opts, default_syscalls=False)  # type: ignore[arg-type]
    node = node_name or socket.gethostname()
    stream = ReopeningFile(output) if output else sys.stdout
    session = build_session(config, backend, JsonlWriter(stream), log=log, stamp={"node": node})
    if output:
        signal.signal(signal.SIGHUP, lambda *_: session.defer(stream.reopen))
    metrics = None
    if metrics_listen:
        from sigtrace.metrics import Metrics, parse_listen, serve

        host, port = parse_listen(metrics_listen)
        m = Metrics()
        session.observers.append(m.observe)
        metrics = serve(host, port, m, healthy=lambda: session.live)
        log.info(f"metrics on http://{host}:{metrics.port}/metrics", port=metrics.port)
    try:
        session.run()
    finally:
        if metrics is not None:
            metrics.close()
        if output:
            stream.close()
    log.info(f"stopped (pid {os.getpid()})")
