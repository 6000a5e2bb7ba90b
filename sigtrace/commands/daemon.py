"""`sigtrace daemon`: host-wide, on every node. JSONL on stdout (or --output, reopened on
SIGHUP for logrotate), logs on stderr (text, or JSON lines with --log-format json), the node
name in every record, a graceful SIGTERM.

A failing output (disk full, I/O error, stdout's reader gone) does not stop it: it logs the
failure once, counts the records it cannot write (`sigtrace_output_errors_total`), tries
again with the next ones, and once writing works it writes a `lost` record (`reason:
"output"`) with the count (sigtrace.output_loss)."""

from __future__ import annotations

import os
import signal
import socket
from typing import TYPE_CHECKING

import click

from sigtrace.commands.options import make_config, trace_options
from sigtrace.errors import SigtraceError, UsageError
from sigtrace.k8s_api import target
from sigtrace.log import FORMATS, LEVELS, Log, errors_to

if TYPE_CHECKING:
    from sigtrace.metrics import Metrics
    from sigtrace.output.sink import LineSink


@click.command(
    epilog="""\b
Examples:
  sudo sigtrace daemon                                  # JSONL on stdout
  sudo sigtrace daemon --output /var/log/sigtrace/sigtrace.jsonl
  NODE_NAME=node-3 sigtrace daemon --metrics :9090     # metrics on every address
  sigtrace daemon --log-format json 2>>/var/log/sigtrace/daemon.log
  sigtrace daemon --k8s-events                         # in a pod: Events on the pods
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
    metavar="[[HOST]:]PORT",
    help="Serve Prometheus metrics and /healthz here: PORT is 127.0.0.1:PORT, :PORT every "
    "IPv4 address.",
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
@click.option(
    "--k8s-events",
    is_flag=True,
    default=False,
    help="Write each non-graceful verdict of a pod as a Kubernetes Event on the pod (in a pod: "
    "its service account; else --k8s-api and --k8s-token-file).",
)
@click.option("--k8s-api", default=None, metavar="URL", help="The API server for --k8s-events.")
@click.option(
    "--k8s-token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A bearer token for --k8s-api [in a pod: the service account's].",
)
@click.option(
    "--k8s-ca-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="CA bundle to verify --k8s-api with [in a pod: the service account's; else the system's].",
)
def daemon(
    output: str | None,
    node_name: str | None,
    metrics_listen: str | None,
    log_format: str,
    log_level: str,
    backend: str,
    k8s_events: bool,
    k8s_api: str | None,
    k8s_token_file: str | None,
    k8s_ca_file: str | None,
    **opts: object,
) -> None:
    """Trace host-wide until SIGTERM/SIGINT, writing JSONL for log pipelines."""
    from sigtrace.output.jsonl import JsonlWriter
    from sigtrace.output.sink import LineSink, stdout_sink
    from sigtrace.output_loss import OutputLossReport
    from sigtrace.runner import build_session

    log = Log("sigtrace daemon", log_format, log_level)
    errors_to(log)  # a fatal error is a log line too, in the same format
    config = make_config(**opts)  # type: ignore[arg-type]
    node = node_name or socket.gethostname()
    if not k8s_events and (k8s_api or k8s_token_file or k8s_ca_file):
        raise UsageError("--k8s-api, --k8s-token-file and --k8s-ca-file need --k8s-events")
    api_target = target(k8s_api, k8s_token_file, k8s_ca_file) if k8s_events else None
    sink = (
        LineSink.open(output, "--output", append=True, keep_going=True)
        if output
        else stdout_sink(keep_going=True)
    )
    writer = JsonlWriter(sink)
    session = build_session(config, backend, writer, log=log, stamp={"node": node})
    OutputLossReport(session, sink, writer.encode)
    if output:
        signal.signal(signal.SIGHUP, lambda *_: session.defer(lambda: _reopen(log, sink)))
    metrics, m = None, None
    if metrics_listen:
        from sigtrace.metrics import Metrics, parse_listen, serve

        host, port = parse_listen(metrics_listen)
        m = Metrics()
        session.observers.append(m.observe)
        sink.on_drop = m.output_errors.inc
        metrics = serve(
            host, port, m, healthy=lambda: session.live, degraded=lambda: _degraded(sink)
        )
        log.info(f"metrics on http://{host}:{metrics.port}/metrics", port=metrics.port)
    sink.on_change = lambda err: _output_changed(log, sink, err, m)
    events = None
    if api_target is not None:
        from sigtrace.k8s_api import Api
        from sigtrace.k8s_events import EventPoster

        events = EventPoster(Api(api_target).post_event, log, node).start()
        session.observers.append(events.observe)
        where = f"https://{api_target.host}:{api_target.port}"
        log.info(f"Kubernetes Events for non-graceful pod verdicts via {where}", api=where)
    try:
        session.run()
    finally:
        if events is not None:
            counts = events.close()
            log.info(
                "Kubernetes Events: " + ", ".join(f"{n} {k}" for k, n in counts.items()), **counts
            )
        if metrics is not None:
            metrics.close()
        sink.close()
    log.info(f"stopped (pid {os.getpid()})")


def _output_changed(log: Log, sink: LineSink, err: OSError | None, m: Metrics | None) -> None:
    """Logged once when writing starts to fail, once when it works again."""
    if m is not None:
        m.output_failing.set(err is not None)
    if err is not None:
        log.error(
            f"writing to {sink.name} failed: {err.strerror or err}; still tracing, counting "
            "the records not written",
            output=sink.name,
        )
    else:
        log.info(
            f"writing to {sink.name} works again; {sink.dropped} records not written so far",
            output=sink.name,
            dropped=sink.dropped,
        )


def _degraded(sink: LineSink) -> str | None:
    err = sink.error
    if err is None:
        return None
    return (
        f"writing to {sink.name} fails ({err.strerror or err}); "
        f"{sink.dropped} records not written so far"
    )


def _reopen(log: Log, sink: LineSink) -> None:
    try:
        sink.reopen()
    except SigtraceError as exc:  # the directory gone, say: keep the file still open
        log.error(f"{exc.message}; still writing to the old file", output=sink.name)
