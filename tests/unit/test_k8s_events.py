"""--k8s-events: the Event a pod's verdict becomes (from recorded stories), the rate limit and
the bounded queue, a poster that keeps going when the API fails, and the API client against a
real local HTTPS server (a self-signed certificate, a bearer token)."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from sigtrace.errors import UsageError
from sigtrace.k8s_api import Api, ApiError, target
from sigtrace.k8s_events import EventPoster, TokenBucket, event_for
from sigtrace.log import Log
from tests.unit.test_stories import run

STORIES = Path(__file__).parents[1] / "data" / "stories"
POD = {"namespace": "shop", "name": "web-1", "uid": "u-1", "container": "web"}


def pod_verdict(name: str, pod: dict | None = POD) -> dict:
    records = [json.loads(line) for line in (STORIES / f"{name}.jsonl").open()]
    v = run(records)[0]
    v["container"] = {**v["container"], "pod": pod}
    return v


def test_the_seed_story_becomes_a_warning_on_its_pod() -> None:
    v = pod_verdict("shellform")
    e = event_for(v, "node-3")
    assert e is not None
    assert e["reason"] == "SigtermIgnoredByPID1" and e["type"] == "Warning"
    assert e["metadata"] == {"generateName": "web-1.sigtrace-", "namespace": "shop"}
    assert e["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": "shop",
        "name": "web-1",
        "uid": "u-1",
        "fieldPath": "spec.containers{web}",
    }
    assert e["message"].startswith(
        f"container web: SIGTERM dropped: PID 1 has no handler; {v['wasted_s']} s wasted, "
        "exit 137. Fix: PID 1 is a shell"
    )
    assert e["source"] == {"component": "sigtrace", "host": "node-3"}
    assert e["firstTimestamp"] == v["time"][:19] + "Z"


@pytest.mark.parametrize(
    ("story", "reason"),
    [
        ("noforward", "SigtermNotForwarded"),
        ("slowstop", "SlowShutdown"),
        ("kill", "KilledWithoutStopSignal"),
        ("sigign", "SigtermIgnored"),
        ("blocked", "SigtermBlocked"),
    ],
)
def test_reasons(story: str, reason: str) -> None:
    e = event_for(pod_verdict(story), None)
    assert e is not None and e["reason"] == reason and "host" not in e["source"]


def test_graceful_or_no_pod_is_no_event() -> None:
    assert event_for(pod_verdict("execform"), "n") is None
    assert event_for(pod_verdict("shellform", pod=None), "n") is None


def test_a_long_message_is_cut_to_the_apis_limit() -> None:
    v = pod_verdict("shellform")
    v["hint"] = "x" * 5000
    e = event_for(v, "n")
    assert e is not None and len(e["message"]) == 1024 and e["message"].endswith("...")


def test_token_bucket() -> None:
    now = [0.0]
    b = TokenBucket(2, 1.0, clock=lambda: now[0])
    assert [b.take(), b.take(), b.take()] == [True, True, False]
    now[0] = 1.0
    assert [b.take(), b.take()] == [True, False]


def test_the_poster_keeps_going_when_posts_fail_and_never_blocks_the_caller() -> None:
    posted: list[str | None] = []
    gate = threading.Event()

    def post(event: dict) -> None:
        gate.wait(5)
        if not posted:
            posted.append(None)
            raise ApiError("POST: connection refused")  # the first fails
        posted.append(event["reason"])

    p = EventPoster(post, Log("t", "text", "error"), "n", TokenBucket(5, 0.0), size=2).start()
    v = pod_verdict("shellform")
    t0 = time.monotonic()
    for _ in range(7):
        p.observe(v)
    p.observe({"type": "signal"})
    assert time.monotonic() - t0 < 0.5  # the API's wait is the thread's, not the record path's
    gate.set()
    counts = p.close()
    # 5 taken by the bucket, 2 rate limited; of the 5, the thread held 1 and the queue 2.
    assert counts["rate_limited"] == 2
    assert counts["failed"] == 1 and counts["posted"] + counts["dropped"] == 4
    assert counts["posted"] >= 1 and posted[1:] == ["SigtermIgnoredByPID1"] * counts["posted"]


# --- the client against a real HTTPS server ----------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class FakeApiServer(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, str, dict | None]]] = []

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, self.headers["Authorization"], None))
        if self.path == "/api/v1/namespaces/shop/pods/web-1":
            self._answer(200, {"metadata": {"uid": "from-api"}})
        else:
            self._answer(404, {"kind": "Status", "message": "pods not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(("POST", self.path, self.headers["Authorization"], body))
        if self.headers["Authorization"] != "Bearer tok-2":
            self._answer(403, {"kind": "Status", "message": "forbidden"})
        else:
            self._answer(201, body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_client_posts_with_the_token_verifies_the_server_and_fills_the_uid(
    tls: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = tls
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = tmp_path / "token"
    token.write_text("tok-1\n")
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        api = Api(target(url, str(token), str(cert)))
        event = event_for(pod_verdict("shellform", {**POD, "uid": None}), "n")
        assert event is not None
        with pytest.raises(ApiError, match=r"HTTP 403 \(forbidden\)"):
            api.post_event(event)
        token.write_text("tok-2\n")  # rotated in place: read at each request
        api.post_event(event)
        method, path, auth, body = FakeApiServer.seen[-1]
        assert (method, path, auth) == ("POST", "/api/v1/namespaces/shop/events", "Bearer tok-2")
        assert body is not None and body["involvedObject"]["uid"] == "from-api"
        # Not the CA that signed it: refused.
        other = Api(target(url, str(token), None))
        with pytest.raises(ApiError, match="CERTIFICATE_VERIFY_FAILED"):
            other.post_event(event)
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(ApiError, match="POST /api/v1/namespaces/shop/events"):
        Api(target(url, str(token), str(cert)), timeout_s=1).post_event(event)


def test_in_cluster_config(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t")
    (tmp_path / "ca.crt").write_text("c")
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    t = target(None, None, None, env=env, sa_dir=tmp_path)
    assert (t.host, t.port, t.token_file, t.ca_file) == (
        "10.0.0.1", 443, str(tmp_path / "token"), str(tmp_path / "ca.crt"),
    )  # fmt: skip
    env6 = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
    assert target(None, None, None, env=env6, sa_dir=tmp_path).host == "fd00::1"


@pytest.mark.parametrize(
    ("url", "token", "message"),
    [
        (None, None, "not in a pod"),
        ("http://api:80", "TOKEN", "is not an https://HOST"),
        ("https://api:6443", None, "needs --k8s-token-file"),
        ("https://api:6443", "/nonexistent", "cannot read the token file"),
        ("https://api:x", "TOKEN", "Port could not be cast"),
    ],
)
def test_bad_options_are_usage_errors(
    url: str | None, token: str | None, message: str, tmp_path: Path
) -> None:
    if token == "TOKEN":
        token = str(tmp_path / "t")
        Path(token).write_text("t")
    with pytest.raises(UsageError, match=message):
        target(url, token, None, env={}, sa_dir=tmp_path)
