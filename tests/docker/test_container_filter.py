"""--container / --wait with a real Docker daemon: the stop of the traced container is
reported with its name, nothing of other containers is, and a container that appears or is
restarted while traced is followed."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest
from sigtrace_docker_helpers import Container, ContainerFactory, docker

from tests.tracing import Record, Tracer, run_sigtrace, wait_for

pytestmark = pytest.mark.docker


def start(tmp_path: Path, *args: str, name: str = "t") -> Tracer:
    t = Tracer(list(args), tmp_path / f"{name}.jsonl", tmp_path / f"{name}.err")
    t.wait_started()
    return t


def stop_signals_to(records: list[Record], c: Container) -> list[Record]:
    """Signals whose target is c's PID 1, in order."""
    return [
        r
        for r in records
        if r["type"] == "signal"
        and r["target"]["pid1"]
        and (r["target"].get("container") or {}).get("id") == c.id
    ]


def containers_seen(records: list[Record]) -> set[str]:
    out = set()
    for r in records:
        for role in ("sender", "target", "process"):
            c = (r.get(role) or {}).get("container")
            if c:
                out.add(c["id"])
    return out


def test_docker_stop_of_the_traced_container_only(
    container_factory: ContainerFactory, tmp_path: Path, backend: str
) -> None:
    app = container_factory("app", "st-shellform")
    other = container_factory("other", "st-shellform")
    t = start(tmp_path, "--container", app.name, "--backend", backend)
    app.stop(grace_s=1)
    other.stop(grace_s=1)
    records = t.stop()
    assert records[0]["backend"] == backend

    term, *rest = stop_signals_to(records, app)
    assert (term["signal"], term["outcome"], term["reason"]) == (
        "SIGTERM",
        "ignored",
        "pid1_no_handler",
    )
    assert term["target"]["ns_pid"] == 1 and term["target"]["container"]["name"] == app.name
    assert term["target"]["container"]["runtime"] == "docker"
    assert term["sender"]["container"] is None  # the runtime, on the host
    if backend == "ptrace":
        # SIGKILL never stops a tracee: only the exit it causes is seen (see cannot_see)
        assert rest == [] and any("SIGKILL is never seen" in c for c in records[0]["cannot_see"])
    else:
        kill = rest[0]
        assert (kill["signal"], kill["outcome"]) == ("SIGKILL", "delivered")
    pid1_exit = [r for r in records if r["type"] == "exit" and r["process"]["pid"] == app.pid]
    assert [e["exit_code"] for e in pid1_exit] == [137]
    assert containers_seen(records) == {app.id}, "records of another container leaked"


def test_by_id_prefix_and_two_containers_at_once(
    container_factory: ContainerFactory, tmp_path: Path
) -> None:
    a = container_factory("a", "st-execform")
    b = container_factory("b", "st-execform")
    c = container_factory("c", "st-execform")
    t = start(tmp_path, "--container", a.id[:12], "--container", b.name)
    for x in (a, b, c):
        x.stop(grace_s=5)
    records = t.stop()
    assert containers_seen(records) == {a.id, b.id}
    for x in (a, b):
        (term,) = [r for r in stop_signals_to(records, x) if r["signal"] == "SIGTERM"]
        assert term["outcome"] == "delivered"  # exec form: the server's trap runs
        assert any(
            r["type"] == "deliver" and r["target"]["pid"] == x.pid and r["action"] == "handler"
            for r in records
        )


# Runtimes that are not installed (no state directory) are skipped, never an error: on a
# fresh node only Docker is there, and `--wait` is made for exactly that node.
ABSENT_RUNTIMES = {
    "SIGTRACE_CONTAINERD_STATE": "/nonexistent/containerd",
    "SIGTRACE_CRIO_ROOT": "/nonexistent/crio",
    "SIGTRACE_PODMAN_ROOT": "/nonexistent/podman",
}


@pytest.mark.parametrize("others", ["installed", "absent"])
def test_wait_for_a_container_started_later(
    container_factory: ContainerFactory, tmp_path: Path, others: str
) -> None:
    name = f"st-test-late-{time.monotonic_ns() % 100000}"
    container_factory.names.append(name)  # removed at teardown
    env = ABSENT_RUNTIMES if others == "absent" else None
    t = Tracer(["--container", name, "--wait"], tmp_path / "t.jsonl", tmp_path / "t.err", env=env)
    t.wait_started()
    assert f"waiting for container {name} (no container {name!r}; " in t.stderr()
    late = _run_named(name)
    wait_for(lambda: "following" in t.stderr(), timeout=10, what="the tracer to follow")
    docker("stop", "-t", "5", name)
    records = t.stop()
    assert containers_seen(records) == {late.id}
    assert [r["signal"] for r in stop_signals_to(records, late)][:1] == ["SIGTERM"]


def _run_named(name: str) -> Container:
    cid = docker(
        "run", "-d", "--pull", "never", "--name", name, "--label", "sigtrace.test=1", "st-execform"
    ).strip()
    info = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", cid],
        capture_output=True,
        text=True,
        check=True,
    )
    return Container(id=cid, name=name, pid=int(info.stdout))


def test_a_restarted_container_is_followed(
    container_factory: ContainerFactory, tmp_path: Path
) -> None:
    app = container_factory("restart", "st-execform")
    t = start(tmp_path, "--container", app.name)
    docker("restart", "-t", "5", app.name)
    wait_for(lambda: "following" in t.stderr(), timeout=10, what="the new cgroup")
    second_pid = int(docker("inspect", "-f", "{{.State.Pid}}", app.name))
    assert second_pid != app.pid
    app.stop(grace_s=5)
    records = t.stop()
    terms = [r for r in stop_signals_to(records, app) if r["signal"] == "SIGTERM"]
    assert [r["target"]["pid"] for r in terms] == [app.pid, second_pid]


def test_unknown_container_lists_what_exists(container_factory: ContainerFactory) -> None:
    app = container_factory("known", "st-execform")
    r = run_sigtrace("--container", "no-such-thing")
    assert r.returncode == 7
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("sigtrace: no container 'no-such-thing'") and app.name in line


def test_runtime_down_names_fail_clearly_but_ids_still_trace(
    container_factory: ContainerFactory, tmp_path: Path
) -> None:
    app = container_factory("nodocker", "st-execform")
    # Docker installed but down: its socket is there (stale, nothing listens), its state is not
    # readable. (Neither there at all is Docker absent, which is no failure: exit 7.)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "stale.sock"))
    stale.close()
    env_down = {
        "SIGTRACE_DOCKER_SOCKET": str(tmp_path / "stale.sock"),
        "SIGTRACE_DOCKER_ROOT": str(tmp_path / "absent-root"),
        "SIGTRACE_CONTAINERD_STATE": str(tmp_path / "absent-state"),
        "SIGTRACE_CRIO_ROOT": str(tmp_path / "absent-crio"),
        "SIGTRACE_PODMAN_ROOT": str(tmp_path / "absent-podman"),
    }
    r = run_sigtrace("--container", app.name, env=env_down)
    assert r.returncode == 8, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("sigtrace: cannot list containers")
    # By full id, tracing goes on: records carry the id, without a name.
    t = Tracer(["--container", app.id], tmp_path / "ids.jsonl", tmp_path / "ids.err", env=env_down)
    t.wait_started()
    app.stop(grace_s=5)
    records = t.stop()
    (term,) = [r for r in stop_signals_to(records, app) if r["signal"] == "SIGTERM"]
    assert term["target"]["container"]["name"] is None


def test_unknown_container_beside_absent_runtimes_is_7_listing_what_docker_has(
    container_factory: ContainerFactory,
) -> None:
    app = container_factory("known", "st-execform")
    r = run_sigtrace("--container", "st-test-no-such-name", env=ABSENT_RUNTIMES)
    assert r.returncode == 7, r.stderr
    line = r.stderr.strip()
    assert "\n" not in line
    assert line.startswith("sigtrace: no container 'st-test-no-such-name'; containers: ")
    assert app.name in line and "not reachable" not in line
