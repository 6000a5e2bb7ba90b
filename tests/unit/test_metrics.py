"""Metrics: records in, scraped over real HTTP on 127.0.0.1 (port 0) out."""

from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sigtrace.errors import UsageError
from sigtrace.metrics import Metrics, MetricsServer, parse_listen, serve
from sigtrace.stories import StoryTracker

DATA = Path(__file__).parents[1] / "data"

T = "2024-05-01T10:00:00.000000000Z"


def proc(pid: int, container: str | None = None, ns: str | None = None, pod: str | None = None):
    c = None
    if container is not None:
        c = {"id": f"{pid:064x}", "name": container, "runtime": "containerd", "image": "x"}
        if pod is not None:
            c["pod"] = {"name": pod, "namespace": ns, "uid": "u", "container": container}
    return {"pid": pid, "tid": pid, "ns_pid": 1, "pid1": True, "comm": "sh", "container": c}


def signal_rec(target: dict, sig: str = "SIGTERM", outcome: str = "ignored", reason=None):
    return {
        "schema": "sigtrace.v1",
        "type": "signal",
        "time": T,
        "signal": sig,
        "signo": 15,
        "sender": proc(10),
        "target": target,
        "outcome": outcome,
        "reason": reason,
    }


def rec(kind: str, **fields: object) -> dict:
    return {"schema": "sigtrace.v1", "type": kind, "time": T, **fields}


def verdict_rec(pid1: dict, verdict: str = "ignored_by_pid1") -> dict:
    """The shape StoryTracker writes: the container at top level, a pid1 without one."""
    slim = {k: pid1[k] for k in ("pid", "comm")}
    return rec("verdict", verdict=verdict, container=pid1["container"], pid1=slim)


class State:
    healthy = False


@pytest.fixture
def served() -> Iterator[tuple[Metrics, MetricsServer, State]]:
    m = Metrics(max_containers=3)
    state = State()
    srv = serve("127.0.0.1", 0, m, healthy=lambda: state.healthy)
    try:
        yield m, srv, state
    finally:
        srv.close()


def get(srv: MetricsServer, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}{path}", timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def scrape(srv: MetricsServer) -> dict[tuple[str, frozenset], float]:
    status, ctype, body = get(srv, "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain; version=")  # Prometheus text format
    return parse(body)


def parse(body: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def C(container: str = "", ns: str = "", pod: str = "") -> dict[str, str]:
    return {"container": container, "pod_namespace": ns, "pod": pod}


def test_counts_by_outcome_container_and_pod(served) -> None:
    m, srv, _ = served
    web = proc(100, "web", "shop", "web-7d9f")
    m.observe(rec("start", backend="core"))
    m.observe(signal_rec(web, reason="pid1_no_handler"))
    m.observe(signal_rec(web, reason="pid1_no_handler"))
    m.observe(signal_rec(web, sig="SIGKILL", outcome="delivered"))
    m.observe(signal_rec(proc(200), sig="SIGHUP", outcome="delivered"))  # the host
    m.observe(verdict_rec(web))
    m.observe(rec("lost", count=7))
    m.observe(rec("lost", count=5))
    s = scrape(srv)
    sig = "sigtrace_signals_total"
    pod = C("web", "shop", "web-7d9f")
    assert value(s, sig, signal="SIGTERM", outcome="ignored", reason="pid1_no_handler", **pod) == 2
    assert value(s, sig, signal="SIGKILL", outcome="delivered", reason="", **pod) == 1
    assert value(s, sig, signal="SIGHUP", outcome="delivered", reason="", **C()) == 1
    assert value(s, "sigtrace_verdicts_total", verdict="ignored_by_pid1", **pod) == 1
    assert value(s, "sigtrace_lost_records_total") == 12
    assert value(s, "sigtrace_events_total", backend="core", type="signal") == 4
    assert value(s, "sigtrace_events_total", backend="core", type="lost") == 2
    assert value(s, "sigtrace_events_total", backend="core", type="start") == 1
    assert value(s, "sigtrace_tracing_up") == 1
    # The process collector is registered (Linux /proc).
    assert value(s, "process_resident_memory_bytes") is not None
    assert not any(name.endswith("_created") for name, _ in s)


def test_container_without_pod_and_without_name(served) -> None:
    m, srv, _ = served
    plain = proc(300, "db")
    unnamed = proc(301, "x")
    unnamed["container"]["name"] = None
    m.observe(signal_rec(plain))
    m.observe(signal_rec(unnamed))
    s = scrape(srv)
    base = {"signal": "SIGTERM", "outcome": "ignored", "reason": ""}
    assert value(s, "sigtrace_signals_total", **base, **C("db")) == 1
    assert value(s, "sigtrace_signals_total", **base, **C(f"{301:064x}"[:12])) == 1


def test_stop_record_sets_tracing_down(served) -> None:
    m, srv, _ = served
    m.observe(rec("start", backend="core"))
    m.observe(rec("stop", records={}, lost=0))
    s = scrape(srv)
    assert value(s, "sigtrace_tracing_up") == 0
    assert value(s, "sigtrace_events_total", backend="core", type="stop") == 1


def test_cardinality_bound_collapses_to_other(served) -> None:
    m, srv, _ = served  # max_containers=3
    for i in range(5):
        m.observe(signal_rec(proc(400 + i, f"c{i}", "ns", f"p{i}")))
    m.observe(signal_rec(proc(400, "c0", "ns", "p0")))  # a known one still counts as itself
    m.observe(signal_rec(proc(500)))  # the host is never collapsed
    s = scrape(srv)
    series = {
        dict(labels)["container"]: v
        for (n, labels), v in s.items()
        if n == "sigtrace_signals_total"
    }
    assert series == {"c0": 2, "c1": 1, "c2": 1, "_other": 2, "": 1}
    sig = {"signal": "SIGTERM", "outcome": "ignored", "reason": ""}
    assert value(s, "sigtrace_signals_total", **sig, **C("_other", "_other", "_other")) == 2


def test_idle_label_sets_are_evicted_before_collapsing() -> None:
    now = [0.0]
    m = Metrics(max_containers=2, idle_seconds=60, clock=lambda: now[0])
    m.observe(signal_rec(proc(1, "old", "ns", "p-old")))
    now[0] = 30
    m.observe(signal_rec(proc(2, "recent", "ns", "p-recent")))
    m.observe(verdict_rec(proc(2, "recent", "ns", "p-recent")))
    now[0] = 61  # "old" idle for 61 s, "recent" for 31 s
    m.observe(signal_rec(proc(3, "new", "ns", "p-new")))
    now[0] = 62  # full again, nothing idle: collapses
    m.observe(signal_rec(proc(4, "newer", "ns", "p-newer")))
    s = parse(m.exposition()[0].decode())
    sig = {"signal": "SIGTERM", "outcome": "ignored", "reason": ""}
    assert value(s, "sigtrace_signals_total", **sig, **C("old", "ns", "p-old")) is None
    assert value(s, "sigtrace_signals_total", **sig, **C("recent", "ns", "p-recent")) == 1
    assert value(s, "sigtrace_signals_total", **sig, **C("new", "ns", "p-new")) == 1
    assert value(s, "sigtrace_signals_total", **sig, **C("_other", "_other", "_other")) == 1
    verdict = {"verdict": "ignored_by_pid1", **C("recent", "ns", "p-recent")}
    assert value(s, "sigtrace_verdicts_total", **verdict) == 1
    assert "newer" not in m.exposition()[0].decode()


def test_healthz_follows_the_check(served) -> None:
    _, srv, state = served
    assert get(srv, "/healthz")[0::2] == (503, "not tracing\n")
    state.healthy = True
    assert get(srv, "/healthz")[0::2] == (200, "ok\n")
    assert get(srv, "/nope")[0] == 404


def test_output_loss_is_counted_apart_from_the_ring_buffer(served) -> None:
    m, srv, _ = served
    m.observe(rec("lost", count=7, reason="buffer"))
    m.observe(rec("lost", count=3))  # from a sigtrace before `reason`: the ring buffer
    m.output_errors.inc(5)  # the daemon's sink, as it drops records
    m.output_failing.set(1)
    m.observe(rec("lost", count=5, reason="output"))  # its report, once writing works
    s = scrape(srv)
    assert value(s, "sigtrace_lost_records_total") == 10
    assert value(s, "sigtrace_output_errors_total") == 5
    assert value(s, "sigtrace_output_failing") == 1


def test_healthz_says_degraded_and_stays_200() -> None:
    note: list[str] = ["writing to /x fails (No space left on device); 4 records not written"]
    srv = serve("127.0.0.1", 0, Metrics(), healthy=lambda: True, degraded=lambda: note[0])
    try:
        assert get(srv, "/healthz")[0::2] == (200, f"degraded: {note[0]}\n")
        note[0] = ""
        assert get(srv, "/healthz")[0::2] == (200, "ok\n")
    finally:
        srv.close()


def test_healthz_is_503_when_the_check_raises() -> None:
    def broken() -> bool:
        raise RuntimeError("boom")

    srv = serve("127.0.0.1", 0, Metrics(), healthy=broken)
    try:
        assert get(srv, "/healthz")[0] == 503
    finally:
        srv.close()


def test_close_frees_the_port() -> None:
    srv = serve("127.0.0.1", 0, Metrics(), healthy=lambda: True)
    port = srv.port
    srv.close()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    with pytest.raises(ConnectionRefusedError):
        conn.request("GET", "/healthz")
    # and it can be bound again at once (SO_REUSEADDR)
    serve("127.0.0.1", port, Metrics(), healthy=lambda: True).close()


def test_port_in_use_is_a_usage_error() -> None:
    srv = serve("127.0.0.1", 0, Metrics(), healthy=lambda: True)
    try:
        with pytest.raises(UsageError, match="in use"):
            serve("127.0.0.1", srv.port, Metrics(), healthy=lambda: True)
    finally:
        srv.close()


def test_ipv6_loopback() -> None:
    try:
        srv = serve("::1", 0, Metrics(), healthy=lambda: True)
    except UsageError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    try:
        with urllib.request.urlopen(f"http://[::1]:{srv.port}/healthz", timeout=5) as r:
            assert r.status == 200
    finally:
        srv.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9090", ("127.0.0.1", 9090)),
        ("0", ("127.0.0.1", 0)),
        ("0.0.0.0:9090", ("0.0.0.0", 9090)),
        ("localhost:65535", ("localhost", 65535)),
        ("node-1.example:80", ("node-1.example", 80)),
        ("[::1]:9090", ("::1", 9090)),
        ("[::]:9090", ("::", 9090)),
        (":9090", ("0.0.0.0", 9090)),  # every address, as `sigtrace --help` shows it
        (":0", ("0.0.0.0", 0)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":",
        "::9090",
        ": 9090",
        ":65536",
        "host:",
        "9090:",
        "65536",
        "host:-1",
        "host:+80",
        "1.2.3.4:99999",
        "::1:9090",
        "::1",
        "[::1]",
        "[::1]9090",
        "[nope]:9090",
        "300.1.1.1:80",
        "bad_host:80",
        " 9090",
        "http://x:80",
    ],
)
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_listen(text)


def test_a_recorded_stop_and_its_verdict_count_under_the_container() -> None:
    """A real `docker stop` stream (tests/data/stories) and the verdict StoryTracker tells of
    it: the signals and the verdict are counted under the container's name."""
    stream = [
        json.loads(line) for line in (DATA / "stories" / "shellform.jsonl").read_text().splitlines()
    ]
    tracker = StoryTracker()
    records = [out for r in stream for out in (r, *tracker.feed(r))] + tracker.flush()
    m = Metrics()
    for r in records:
        m.observe(r)
    s = parse(m.exposition()[0].decode())
    (v,) = [r for r in records if r["type"] == "verdict"]
    name = v["container"]["name"]
    assert name and name.startswith("st-rec-shellform")
    assert value(s, "sigtrace_verdicts_total", verdict="ignored_by_pid1", **C(name)) == 1
    term = {"signal": "SIGTERM", "outcome": "ignored", "reason": "pid1_no_handler"}
    assert value(s, "sigtrace_signals_total", **term, **C(name)) == 1

    assert value(s, "sigtrace_build_info", version="0.1.0", backend="core") == 1
    wasted = v["wasted_s"]
    assert wasted and wasted > 1.5  # docker stop -t 2 on a PID 1 that drops SIGTERM
    assert value(s, "sigtrace_verdict_wasted_seconds_sum", verdict="ignored_by_pid1") == wasted
    assert value(s, "sigtrace_verdict_wasted_seconds_count", verdict="ignored_by_pid1") == 1
    assert (
        value(s, "sigtrace_verdict_wasted_seconds_bucket", verdict="ignored_by_pid1", le="1.0") == 0
    )
    assert (
        value(s, "sigtrace_verdict_wasted_seconds_bucket", verdict="ignored_by_pid1", le="5.0") == 1
    )


def test_every_metrics_example_parses() -> None:
    """`sigtrace --help`, `sigtrace daemon --help` and the DaemonSet show --metrics values:
    each one must be accepted."""
    from sigtrace.cli import EXAMPLES
    from sigtrace.commands.daemon import daemon

    manifest = (Path(__file__).parents[2] / "packaging/kubernetes/sigtrace.yaml").read_text()
    texts = EXAMPLES + (daemon.epilog or "") + manifest
    shown = re.findall(r'--metrics"?,?\s+"?([^\s"\]]+)', texts)
    assert ":9090" in shown and len(shown) >= 3, shown
    for text in shown:
        parse_listen(text)


def test_wasted_seconds_are_labelled_by_verdict_only() -> None:
    m = Metrics()
    m.observe(rec("start", backend="tracefs", version="9.9"))
    for i in range(50):  # fifty containers: still one series set per verdict
        m.observe({**verdict_rec(proc(i, f"c{i}", "ns", f"p{i}"), "graceful"), "wasted_s": 0.0})
    m.observe({**verdict_rec(proc(99, "k"), "killed_without_stop_signal"), "wasted_s": None})
    s = parse(m.exposition()[0].decode())
    keys = [dict(k[1]) for k in s if k[0] == "sigtrace_verdict_wasted_seconds_count"]
    assert keys == [{"verdict": "graceful"}]  # no stop signal: nothing wasted to observe
    assert value(s, "sigtrace_verdict_wasted_seconds_count", verdict="graceful") == 50
    assert value(s, "sigtrace_build_info", version="9.9", backend="tracefs") == 1


def _request(srv: MetricsServer, method: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request(method, "/metrics", headers=headers)
    return conn.getresponse()


def test_openmetrics_gzip_and_head(served) -> None:
    import gzip

    m, srv, _ = served
    m.observe(rec("start", backend="core", version="0.1.0"))
    plain = _request(srv, "GET", {})
    assert plain.getheader("Content-Type").startswith("text/plain; version=0.0.4")
    body = plain.read()
    assert b"sigtrace_build_info" in body and plain.getheader("Content-Encoding") is None

    om = _request(srv, "GET", {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert om.getheader("Content-Type").startswith("application/openmetrics-text; version=1.0.0")
    assert om.read().endswith(b"# EOF\n")

    gz = _request(srv, "GET", {"Accept-Encoding": "gzip, deflate"})
    assert gz.getheader("Content-Encoding") == "gzip"
    assert b"sigtrace_build_info" in gzip.decompress(gz.read())

    head = _request(srv, "HEAD", {})
    assert head.status == 200 and head.read() == b""
    assert int(head.getheader("Content-Length")) > 0
    assert _request(srv, "HEAD", {}).getheader("Content-Type").startswith("text/plain")
