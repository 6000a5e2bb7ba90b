"""Prometheus metrics from the sigtrace.v1 records `sigtrace daemon` writes, and the HTTP server
for them (`--metrics [HOST:]PORT`): `/metrics` and `/healthz`.

Metrics (each record is counted once, as it is written):

- `sigtrace_signals_total{signal,outcome,reason,container,pod_namespace,pod}`: `signal` records;
  `reason` is "" when the record has none.
- `sigtrace_verdicts_total{verdict,container,pod_namespace,pod}`: `verdict` records; `verdict`
  is a name from sigtrace/verdicts.py's table ("unknown" for any other).
- `sigtrace_verdict_wasted_seconds{verdict}`: a histogram of the verdict records' `wasted_s`
  (grace time spent after the stop signal was lost; 0 when it was not), labelled by verdict
  only, so its cardinality is fixed whatever the containers.
- `sigtrace_build_info{version,backend}`: 1, from the `start` record.
- `sigtrace_lost_records_total`: the `count` of every `lost` record with `reason: "buffer"`
  (ring buffer full).
- `sigtrace_output_errors_total`: records the daemon could not write (its output failing:
  disk full, I/O error, the reader of its stdout gone); counted as they are dropped.
- `sigtrace_output_failing`: 1 while the last write failed, 0 once one succeeds.
- `sigtrace_events_total{backend,type}`: every record, by type.
- `sigtrace_tracing_up`: 1 between the `start` and the `stop` record.
- the process and platform collectors' `process_*` and `python_info`.

Container labels come from a signal record's process object (`target`, else `process`,
`victim`) and its `container`, and from a verdict record's own `container`: `container` is
its name (else its id's first 12 characters), `pod_namespace`/`pod` its
`pod.namespace`/`pod.name`; all three are "" for a process outside any container.

Label cardinality is bounded: at most `max_containers` distinct (container, pod_namespace, pod)
label sets (default 500; the host's empty set is not counted). When a new one arrives and the
bound is reached, the label sets idle for `idle_seconds` (default 10 min) are evicted first, their
series removed (a pod that is gone stops being exported, so a node's churn of short-lived pods
does not fill the bound for good). If none is idle, the new one's samples are counted under
`container="_other", pod_namespace="_other", pod="_other"`.
"""

from __future__ import annotations

import gzip
import ipaddress
import os
import re
import selectors
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder, gzip_accepted

from sigtrace.errors import UsageError
from sigtrace.verdicts import VERDICTS

DEFAULT_HOST = "127.0.0.1"
ALL_HOSTS = "0.0.0.0"  # `--metrics :PORT`
DEFAULT_MAX_CONTAINERS = 500
DEFAULT_IDLE_SECONDS = 600.0  # 500 containers an hour is ordinary node churn
OTHER = "_other"
HOST_KEY = ("", "", "")
# Grace periods are seconds to minutes (Docker 10 s, Kubernetes 30 s by default).
WASTED_BUCKETS = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0)

ContainerKey = tuple[str, str, str]  # (container, pod_namespace, pod)


def _container_key(proc: object) -> ContainerKey:
    if not isinstance(proc, dict):
        return HOST_KEY
    c = proc.get("container")
    if not isinstance(c, dict):
        return HOST_KEY
    name = c.get("name") or (str(c.get("id") or "")[:12])
    pod = c["pod"] if isinstance(c.get("pod"), dict) else {}
    return (str(name), str(pod.get("namespace") or ""), str(pod.get("name") or ""))


def _subject(rec: dict[str, Any]) -> object:
    for key in ("target", "process", "victim"):
        if rec.get(key) is not None:
            return rec[key]
    return None


class Metrics:
    """Counts records into a private registry. `observe` runs in the tracing loop; scrapes read
    the registry from the server's threads (prometheus_client's metrics are thread-safe)."""

    def __init__(
        self,
        max_containers: int = DEFAULT_MAX_CONTAINERS,
        idle_seconds: float | None = DEFAULT_IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_containers < 1:
            raise ValueError("max_containers must be at least 1")
        self.max_containers = max_containers
        self.idle_seconds = idle_seconds
        self.clock = clock
        # `*_created` series would double every series for nothing a dashboard uses. The
        # switch is process-wide; the daemon is the only exporter in its process.
        prometheus_client.disable_created_metrics()
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        clabels = ["container", "pod_namespace", "pod"]
        self.signals = Counter(
            "sigtrace_signals",
            "Signals the kernel generated or kill-family calls that failed, by outcome.",
            ["signal", "outcome", "reason", *clabels],
            registry=self.registry,
        )
        self.verdicts = Counter(
            "sigtrace_verdicts",
            f"Verdicts on container stops ({', '.join(VERDICTS)}), by container.",
            ["verdict", *clabels],
            registry=self.registry,
        )
        self.wasted = Histogram(
            "sigtrace_verdict_wasted_seconds",
            "Grace time spent after the stop signal was lost (verdict records' wasted_s).",
            ["verdict"],
            buckets=WASTED_BUCKETS,
            registry=self.registry,
        )
        self.build_info = Gauge(
            "sigtrace_build_info",
            "1, labelled with the sigtrace version and the backend tracing.",
            ["version", "backend"],
            registry=self.registry,
        )
        self.lost = Counter(
            "sigtrace_lost_records",
            "Records the kernel could not hand over (ring buffer full).",
            registry=self.registry,
        )
        self.output_errors = Counter(
            "sigtrace_output_errors",
            "Records sigtrace could not write (disk full, I/O error, reader gone).",
            registry=self.registry,
        )
        self.output_failing = Gauge(
            "sigtrace_output_failing",
            "1 while writing the records fails, 0 once a write succeeds.",
            registry=self.registry,
        )
        self.events = Counter(
            "sigtrace_events",
            "Records written, by type.",
            ["backend", "type"],
            registry=self.registry,
        )
        self.up = Gauge(
            "sigtrace_tracing_up",
            "1 while tracing is live (between the start and the stop record).",
            registry=self.registry,
        )
        self.backend = "unknown"  # until the start record names it
        self._lock = threading.Lock()
        # label set -> (last seen, the label tuples used with it, per counter)
        self._seen: dict[ContainerKey, float] = {}
        self._series: dict[ContainerKey, set[tuple[Counter, tuple[str, ...]]]] = {}

    def observe(self, record: dict[str, Any]) -> None:
        kind = str(record.get("type") or "")
        if kind == "start":
            self.backend = str(record.get("backend") or "unknown")
            self.up.set(1)
            self.build_info.clear()
            self.build_info.labels(str(record.get("version") or ""), self.backend).set(1)
        elif kind == "stop":
            self.up.set(0)
        self.events.labels(self.backend, kind).inc()
        if kind == "signal":
            key = self._bounded(_container_key(_subject(record)))
            self._inc(
                self.signals,
                key,
                str(record.get("signal") or ""),
                str(record.get("outcome") or ""),
                str(record.get("reason") or ""),
            )
        elif kind == "verdict":
            # a verdict names its container at top level (its pid1 object carries none)
            key = self._bounded(_container_key(record))
            verdict = str(record.get("verdict") or "")
            verdict = verdict if verdict in VERDICTS else "unknown"
            self._inc(self.verdicts, key, verdict)
            wasted = record.get("wasted_s")
            if isinstance(wasted, (int, float)) and not isinstance(wasted, bool):
                self.wasted.labels(verdict).observe(wasted)
        elif kind == "lost" and record.get("reason") != "output":  # those: output_errors
            count = record.get("count")
            if isinstance(count, int) and count > 0:
                self.lost.inc(count)

    def _inc(self, counter: Counter, key: ContainerKey, *values: str) -> None:
        labels = (*values, *key)
        with self._lock:
            if key not in (HOST_KEY, (OTHER, OTHER, OTHER)):
                self._series.setdefault(key, set()).add((counter, labels))
            counter.labels(*labels).inc()

    def _bounded(self, key: ContainerKey) -> ContainerKey:
        if key == HOST_KEY:
            return key
        now = self.clock()
        with self._lock:
            if key in self._seen:
                self._seen[key] = now
                return key
            if len(self._seen) >= self.max_containers and not self._evict_idle(now):
                return (OTHER, OTHER, OTHER)
            self._seen[key] = now
            return key

    def _evict_idle(self, now: float) -> bool:
        if self.idle_seconds is None:
            return False
        idle = [k for k, t in self._seen.items() if now - t >= self.idle_seconds]
        for k in idle:
            del self._seen[k]
            for counter, labels in self._series.pop(k, ()):
                counter.remove(*labels)
        return bool(idle)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The body and its content type: the format the scraper's Accept header asks for
        (OpenMetrics or Prometheus text), as prometheus_client chooses."""
        encoder, ctype = choose_encoder(accept)
        return encoder(self.registry), ctype


# --- [HOST:]PORT

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")


def parse_listen(text: str) -> tuple[str, int]:
    """`9090` -> (127.0.0.1, 9090); `:9090` -> (0.0.0.0, 9090), every IPv4 address, as in Go
    and Prometheus's own exporters; `0.0.0.0:9090`, `node.local:9090`, `[::1]:9090`."""
    hint = "expected [HOST]:PORT or PORT, e.g. 9090, :9090, 0.0.0.0:9090 or [::1]:9090"
    if text.isdigit():
        host, port_text = DEFAULT_HOST, text
    elif text.startswith(":"):
        host, port_text = ALL_HOSTS, text[1:]
    elif text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise UsageError(f"--metrics {text!r}: {hint}")
        host, port_text = text[1:end], text[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UsageError(f"--metrics {text!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise UsageError(f"--metrics {text!r}: {hint}")
        if ":" in host:
            raise UsageError(f"--metrics {text!r}: put an IPv6 address in brackets, [{host}]:PORT")
        if re.fullmatch(r"[0-9.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise UsageError(f"--metrics {text!r}: {host!r} is not an IPv4 address") from None
        elif not _HOSTNAME.match(host):
            raise UsageError(f"--metrics {text!r}: {host!r} is not a host name or address")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(f"--metrics {text!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


# --- The HTTP server


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a client that stalls mid-request does not hold a thread for ever
    _head = False

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        self._head = head
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body, ctype = self.server.metrics.exposition(self.headers.get("Accept", ""))
            gz = gzip_accepted(self.headers.get("Accept-Encoding", ""))
            self._reply(200, gzip.compress(body) if gz else body, ctype, gzip=gz)
        elif path == "/healthz":
            try:
                ok = bool(self.server.healthy())
            except Exception:  # a broken check is an unhealthy daemon, not a dead server
                ok = False
            if ok:
                # Still 200: a restart brings no disk space back and would stop the tracing.
                note = self.server.degraded()
                self._reply(200, f"degraded: {note}\n".encode() if note else b"ok\n")
            else:
                self._reply(503, b"not tracing\n")
        else:
            self._reply(404, b"not found: try /metrics or /healthz\n")

    def _reply(
        self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8", gzip: bool = False
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        if gzip:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Vary", "Accept, Accept-Encoding")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not self._head:  # HEAD: the same headers, no body
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Silent: a liveness probe every few seconds must not fill the daemon's stderr.
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        addr: tuple[str, int],
        family: socket.AddressFamily,
        metrics: Metrics,
        healthy: Callable[[], bool],
        degraded: Callable[[], str | None],
    ) -> None:
        self.address_family = family
        self.metrics = metrics
        self.healthy = healthy
        self.degraded = degraded
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        super().__init__(addr, _Handler)

    def serve_until_closed(self) -> None:
        """serve_forever() wakes every poll_interval to look for shutdown(); an idle daemon
        must not wake at all: this sleeps until a connection comes or close() writes."""
        with selectors.DefaultSelector() as sel:
            sel.register(self, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in sel.select()}
                if self._wake_r in ready:
                    return
                self.handle_request()

    def wake(self) -> None:
        os.write(self._wake_w, b"x")

    def server_close(self) -> None:
        super().server_close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def server_bind(self) -> None:
        # HTTPServer's own looks up the host's FQDN, which stalls where DNS does not answer.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]


@dataclass
class MetricsServer:
    host: str
    port: int
    _server: _Server
    _thread: threading.Thread

    def close(self) -> None:
        self._server.wake()
        self._thread.join(timeout=5)
        self._server.server_close()


def serve(
    host: str,
    port: int,
    metrics: Metrics,
    healthy: Callable[[], bool],
    degraded: Callable[[], str | None] = lambda: None,
) -> MetricsServer:
    """Serves /metrics and /healthz from a daemon thread: 200 `ok` while `healthy()`, 200
    `degraded: <why>` while also `degraded()` says why (the output failing), else 503.
    Port 0 picks a free port: the returned server's `port` is the bound one."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family = infos[0][0]
        server = _Server((host, port), family, metrics, healthy, degraded)
    except OSError as e:
        raise UsageError(f"--metrics {host}:{port}: {e.strerror or e}") from None
    thread = threading.Thread(target=server.serve_until_closed, name="sigtrace-metrics")
    thread.daemon = True
    thread.start()
    return MetricsServer(host, server.server_address[1], server, thread)
