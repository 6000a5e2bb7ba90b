"""`sigtrace daemon` host-wide beside real containers while its Docker API goes away and comes
back: it keeps tracing (ids without names), picks the runtime up again (names), and its
metrics agree with its records.

The runtime "goes down" without touching the Docker daemon other tests use: sigtrace talks to
Docker through a socket proxy (SIGTRACE_DOCKER_SOCKET) that the test closes and reopens, and
its on-disk fallback (SIGTRACE_DOCKER_ROOT) points at an empty directory.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sigtrace_docker_helpers import Container, ContainerFactory, docker

from tests.tracing import Record, Tracer, by_labels, parse_lines, scrape_metrics, wait_for

pytestmark = pytest.mark.docker

DOCKER_SOCKET = "/var/run/docker.sock"
VERDICT_TIMEOUT_S = 10.0


class SocketProxy:
    """Forwards connections on `path` to `upstream`, until closed (then `path` is gone)."""

    def __init__(self, path: Path, upstream: str) -> None:
        self.path, self.upstream = path, upstream
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(16)
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self.upstream)
            self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        # shutdown() wakes the accept() thread (close() alone leaves it blocked)
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for c in self.conns:
            c.close()
        self.path.unlink(missing_ok=True)


@pytest.fixture
def proxy_path(tmp_path: Path) -> Iterator[Path]:
    # AF_UNIX paths are short (108 bytes): not under pytest's deep tmp_path
    path = Path(f"/run/sigtrace-test-{os.getpid()}-{tmp_path.name[-20:]}.sock")
    yield path
    path.unlink(missing_ok=True)


def verdict_for(d: Tracer, c: Container) -> Record:
    def mine() -> list[Record]:
        recs = parse_lines(d.out_path.read_text())
        return [r for r in recs if r["type"] == "verdict" and r["container"]["id"] == c.id]

    wait_for(lambda: bool(mine()), VERDICT_TIMEOUT_S, f"a verdict for {c.name}")
    (v,) = mine()
    return v


def healthz(d: Tracer) -> str:
    url = scrape_url(d).replace("/metrics", "/healthz")
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode().strip()


def scrape_url(d: Tracer) -> str:
    (line,) = [ln for ln in d.stderr().splitlines() if "metrics on http" in ln]
    return line.split("metrics on ", 1)[1]


def test_daemon_outlives_its_runtime_and_picks_it_up_again(
    container_factory: ContainerFactory, tmp_path: Path, proxy_path: Path
) -> None:
    proxy = SocketProxy(proxy_path, DOCKER_SOCKET)
    env = {
        "SIGTRACE_DOCKER_SOCKET": str(proxy_path),
        "SIGTRACE_DOCKER_ROOT": str(tmp_path / "no-docker-state"),
    }
    d = Tracer(
        ["--signal", "TERM,KILL", "--metrics", "127.0.0.1:0"],
        tmp_path / "daemon.jsonl",
        tmp_path / "daemon.err",
        env=env,
        command=("daemon",),
    )
    try:
        d.wait_started()
        proxy.close()  # the runtime is down before the first container exists

        down = container_factory("rt-down", "st-execform")
        down.wait_for_log("ready")
        docker("stop", "-t", "2", down.id)
        v_down = verdict_for(d, down)
        # The story is told all the same, by id: a name sigtrace could not ask for is null.
        assert (v_down["verdict"], v_down["exit_code"]) == ("graceful", 0)
        assert v_down["container"]["name"] is None
        assert d.proc.poll() is None and healthz(d) == "ok"

        proxy = SocketProxy(proxy_path, DOCKER_SOCKET)  # the runtime is back
        up = container_factory("rt-up", "st-shellform")
        up.wait_for_log("ready")
        docker("stop", "-t", "1", up.id)
        v_up = verdict_for(d, up)
        assert (v_up["verdict"], v_up["container"]["name"]) == ("ignored_by_pid1", up.name)

        records = parse_lines(d.out_path.read_text())
        samples = scrape_metrics(d.stderr())
    finally:
        proxy.close()
        records_at_end = d.stop()

    # The metrics of this run agree with its records, container by container.
    labels = {down.id: down.id[:12], up.id: up.name}  # no name: the id's first 12 characters
    verdicts = by_labels(samples["sigtrace_verdicts_total"], "verdict", "container")
    for c, v in ((down, v_down), (up, v_up)):
        assert verdicts[(v["verdict"], labels[c.id])] == 1
        sigs = [
            r
            for r in records
            if r["type"] == "signal" and (r["target"].get("container") or {}).get("id") == c.id
        ]
        assert sigs, f"no signal records for {c.name}"
        want = by_labels([({"s": r["signal"], "o": r["outcome"]}, 1.0) for r in sigs], "s", "o")
        got = by_labels(
            [
                (lb, val)
                for lb, val in samples["sigtrace_signals_total"]
                if lb["container"] == labels[c.id]
            ],
            "signal",
            "outcome",
        )
        assert got == want, c.name
    assert records_at_end[: len(records)] == records
