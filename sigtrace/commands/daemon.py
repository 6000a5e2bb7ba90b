"""`sigtrace daemon`: host-wide, on every node. JSONL on stdout (or --output, reopened on
SIGHUP for logrotate), logs on stderr, the node name in every record, a graceful SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import sys

import click

from sigtrace.commands.options import make_config, trace_options


@click.command(
    epilog="""\b
Examples:
  sudo sigtrace daemon                                  # JSONL on stdout
  sudo sigtrace daemon --output /var/log/sigtrace/sigtrace.jsonl
  NODE_NAME=node-3 sigtrace daemon --metrics 0.0.0.0:9090
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
def daemon(
    output: str | None,
    node_name: str | None,
    metrics_listen: str | None,
    backend: str,
    **opts: object,
) -> None:
    """Trace host-wide until SIGTERM/SIGINT, writing JSONL for log pipelines."""
    from sigtrace.output.jsonl import JsonlWriter
    from sigtrace.output.reopen import ReopeningFile
    from sigtrace.runner import build_session

    # On every node, all the time: no syscall hook by default (see --syscalls).
    config = make_config(**opts, default_syscalls=False)  # type: ignore[arg-type]
    node = node_name or socket.gethostname()
    stream = ReopeningFile(output) if output else sys.stdout
    session = build_session(
        config, backend, JsonlWriter(stream), log_prefix="sigtrace daemon", stamp={"node": node}
    )
    if output:
        signal.signal(signal.SIGHUP, lambda *_: session.defer(stream.reopen))
    metrics = None
    if metrics_listen:
        from sigtrace.metrics import Metrics, parse_listen, serve

        host, port = parse_listen(metrics_listen)
        m = Metrics()
        session.observers.append(m.observe)
        metrics = serve(host, port, m, healthy=lambda: session.live)
        click.echo(f"sigtrace daemon: metrics on http://{host}:{metrics.port}/metrics", err=True)
    try:
        session.run()
    finally:
        if metrics is not None:
            metrics.close()
        if output:
            stream.close()
    click.echo(f"sigtrace daemon: stopped (pid {os.getpid()})", err=True)
