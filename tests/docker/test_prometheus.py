"""A real Prometheus (Debian's `prometheus`) scrapes `sigtrace daemon --metrics 127.0.0.1:PORT`
every second during real `docker stop`s; its HTTP API must then agree with the same run's JSONL:
verdicts counted by verdict, wasted seconds summed by verdict, the build info.

Prometheus scrapes the way it does in production (OpenMetrics in its Accept header, gzip), so
the exposition is read by the consumer it is for, not by a parser of our choosing.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sigtrace_docker_helpers import ContainerFactory, docker

from sigtrace import __version__
from tests.tracing import Record, Tracer, parse_lines, wait_for

pytestmark = pytest.mark.docker

PROMETHEUS = shutil.which("prometheus")
READY_TIMEOUT_S = 30.0
AGREE_TIMEOUT_S = 20.0  # a few scrape intervals after the last verdict
# (container name, image, docker stop -t): one graceful stop, one PID 1 that drops SIGTERM
STOPS = (("prom-exec", "st-execform", "2"), ("prom-shell", "st-shellform", "1"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    """A Prometheus server on 127.0.0.1, its data in a temporary directory."""

    def __init__(self, tmp: Path, target: str) -> None:
        assert PROMETHEUS is not None
        self.port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: sigtrace\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        self.log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.base + path, timeout=5) as r:
            return json.loads(r.read())

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"prometheus exited {self.proc.returncode}: {self.log_text()[-2000:]}")
        try:
            with urllib.request.urlopen(self.base + "/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, promql: str) -> list[dict]:
        out = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert out["status"] == "success", out
        return out["data"]["result"]

    def by(self, promql: str, label: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(promql)}

    def log_text(self) -> str:
        return (Path(self.log.name)).read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Tracer]:
    d = Tracer(
        ["--signal", "TERM,KILL", "--metrics", "127.0.0.1:0"],
        tmp_path / "daemon.jsonl",
        tmp_path / "daemon.err",
        command=("daemon",),
    )
    try:
        d.wait_started()
        yield d
    finally:
        d.close()


def metrics_target(d: Tracer) -> str:
    (line,) = [ln for ln in d.stderr().splitlines() if "metrics on http://" in ln]
    return line.split("http://", 1)[1].split("/", 1)[0]


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus absent (scripts/setup installs it)")
def test_prometheus_scrapes_the_daemon_and_agrees_with_its_records(
    daemon: Tracer, container_factory: ContainerFactory, tmp_path: Path
) -> None:
    prom = Prometheus(tmp_path, metrics_target(daemon))
    try:
        wait_for(prom.ready, READY_TIMEOUT_S, "prometheus to be ready")
        containers = [container_factory(name, image) for name, image, _ in STOPS]
        for c in containers:
            c.wait_for_log("ready")
        for c, (_, _, grace) in zip(containers, STOPS, strict=True):
            docker("stop", "-t", grace, c.id)
        ids = {c.id for c in containers}

        def verdicts() -> list[Record]:
            recs = parse_lines(daemon.out_path.read_text())
            return [r for r in recs if r["type"] == "verdict" and r["container"]["id"] in ids]

        wait_for(lambda: len(verdicts()) == len(containers), 15, "a verdict for each stop")
        mine = verdicts()
        assert sorted(v["verdict"] for v in mine) == ["graceful", "ignored_by_pid1"]

        # Every verdict the daemon wrote (other tests' containers may stop meanwhile).
        def from_jsonl() -> tuple[Counter[str], dict[str, float]]:
            all_v = [r for r in parse_lines(daemon.out_path.read_text()) if r["type"] == "verdict"]
            wasted: dict[str, float] = {}
            for v in all_v:
                if v["wasted_s"] is not None:
                    wasted[v["verdict"]] = wasted.get(v["verdict"], 0.0) + v["wasted_s"]
            return Counter(v["verdict"] for v in all_v), wasted

        def agree() -> bool:
            counts, wasted = from_jsonl()
            got = prom.by('sum by (verdict) (sigtrace_verdicts_total{job="sigtrace"})', "verdict")
            got_w = prom.by("sum by (verdict) (sigtrace_verdict_wasted_seconds_sum)", "verdict")
            return (
                got == {k: float(n) for k, n in counts.items()}
                and got_w.keys() == (wasted.keys())
                and all(abs(got_w[k] - wasted[k]) < 1e-6 for k in wasted)
            )

        deadline = time.monotonic() + AGREE_TIMEOUT_S
        while not agree() and time.monotonic() < deadline:
            time.sleep(0.5)
        counts, wasted = from_jsonl()
        assert prom.by("sum by (verdict) (sigtrace_verdicts_total)", "verdict") == {
            k: float(n) for k, n in counts.items()
        }
        got_w = prom.by("sum by (verdict) (sigtrace_verdict_wasted_seconds_sum)", "verdict")
        assert got_w == pytest.approx(wasted)
        shell = next(v for v in mine if v["verdict"] == "ignored_by_pid1")
        assert shell["wasted_s"] >= 0.9  # docker stop -t 1, SIGTERM dropped: the grace is lost
        assert got_w["ignored_by_pid1"] >= shell["wasted_s"]

        # The container's own series, under the name the JSONL gives it.
        name = shell["container"]["name"]
        per = prom.by(f'sigtrace_verdicts_total{{container="{name}"}}', "verdict")
        assert per == {"ignored_by_pid1": 1.0}

        start = parse_lines(daemon.out_path.read_text())[0]
        (info,) = prom.query("sigtrace_build_info")
        assert info["metric"]["version"] == start["version"] == __version__
        assert info["metric"]["backend"] == start["backend"]
        (target,) = prom.get("/api/v1/targets")["data"]["activeTargets"]
        assert (target["health"], target["lastError"]) == ("up", ""), target
        assert prom.by("sigtrace_tracing_up", "job") == {"sigtrace": 1.0}
    finally:
        prom.close()
    daemon.stop()
