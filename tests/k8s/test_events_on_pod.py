"""`sigtrace daemon --k8s-events` against the test node's API server: the seed scene's verdict
becomes an Event on the pod, which `kubectl get events --field-selector involvedObject.name=POD`
shows; a graceful stop writes none. The daemon runs on the host with the node's API URL, its
token and the API server's own certificate (the node has no service account tokens)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.cluster import Node, Pods
from tests.k8s.scenes import EXEC_FORM, GRACE_S, SHELL_FORM, jsonl, verdicts
from tests.tracing import Tracer

pytestmark = [pytest.mark.k8s, pytest.mark.root]
EVENT_TIMEOUT_S = 20.0


def api_options(node: Node) -> list[str]:
    """--k8s-api/--k8s-token-file/--k8s-ca-file for the node (scripts/k8s-node's state)."""
    kubeconfig = Path(node.env["KUBECONFIG"])
    state = kubeconfig.parent
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    return [
        "--k8s-events",
        "--k8s-api", server,
        "--k8s-token-file", str(state / "token"),
        "--k8s-ca-file", str(state / "pki" / "apiserver.crt"),
    ]  # fmt: skip


def events_of(node: Node, namespace: str, pod: str) -> tuple[str, list[dict[str, Any]]]:
    """What `kubectl get events --field-selector involvedObject.name=POD` prints, and as JSON."""
    selector = ("-n", namespace, "get", "events", "--field-selector", f"involvedObject.name={pod}")
    table = node.kubectl(*selector)
    items = json.loads(node.kubectl(*selector, "-o", "json"))["items"]
    return table, [e for e in items if e.get("source", {}).get("component") == "sigtrace"]


@pytest.fixture
def daemon(k8s_node: Node, tmp_path: Path) -> Any:
    t = Tracer(
        ["--node-name", k8s_node.name, *api_options(k8s_node)],
        tmp_path / "daemon.jsonl",
        tmp_path / "daemon.err",
        env=k8s_node.env,
        command=("daemon",),
    )
    t.wait_started()
    yield t
    t.stop()


def delete_and_wait(node: Node, daemon: Tracer, namespace: str, name: str) -> dict[str, Any]:
    node.kubectl("-n", namespace, "delete", "pod", name, "--wait=true", timeout=90)
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while time.monotonic() < deadline:
        mine = [
            v
            for v in verdicts(jsonl(daemon.out_path.read_text()))
            if (v["container"].get("pod") or {}).get("name") == name
        ]
        if mine:
            return mine[0]
        time.sleep(0.2)
    raise AssertionError(f"no verdict for {name}: {daemon.stderr()[-2000:]}")


def test_the_seed_scene_becomes_an_event_on_the_pod(
    k8s_node: Node, pods: Pods, daemon: Tracer
) -> None:
    pod = pods.run("events", SHELL_FORM, grace_s=GRACE_S)
    v = delete_and_wait(k8s_node, daemon, pod.namespace, pod.name)
    assert v["verdict"] == "ignored_by_pid1", v
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    table, events = "", []
    while time.monotonic() < deadline and not events:
        table, events = events_of(k8s_node, pod.namespace, pod.name)
        time.sleep(0.5)
    print(f"$ kubectl get events --field-selector involvedObject.name={pod.name}\n{table}")
    assert len(events) == 1, (table, daemon.stderr()[-2000:])
    (e,) = events
    assert (e["reason"], e["type"]) == ("SigtermIgnoredByPID1", "Warning"), e
    assert e["involvedObject"]["uid"] == pod.uid, e
    assert e["involvedObject"]["fieldPath"] == "spec.containers{web}", e
    assert f"{v['wasted_s']} s wasted" in e["message"] and "Fix: PID 1 is a shell" in e["message"]
    assert e["source"] == {"component": "sigtrace", "host": k8s_node.name}, e
    assert "SigtermIgnoredByPID1" in table


def test_a_graceful_stop_writes_no_event(k8s_node: Node, pods: Pods, daemon: Tracer) -> None:
    pod = pods.run("noevent", EXEC_FORM, grace_s=GRACE_S)
    v = delete_and_wait(k8s_node, daemon, pod.namespace, pod.name)
    assert v["verdict"] == "graceful", v
    time.sleep(2)  # what would have been posted by now
    assert events_of(k8s_node, pod.namespace, pod.name)[1] == []
    daemon.stop()
    assert "0 failed" in daemon.stderr(), daemon.stderr()[-2000:]


def test_the_daemon_keeps_tracing_when_the_api_is_unreachable(
    k8s_node: Node, pods: Pods, tmp_path: Path
) -> None:
    options = api_options(k8s_node)
    options[options.index("--k8s-api") + 1] = "https://127.0.0.1:9"  # nothing listens there
    t = Tracer(
        ["--node-name", k8s_node.name, *options],
        tmp_path / "down.jsonl",
        tmp_path / "down.err",
        env=k8s_node.env,
        command=("daemon",),
    )
    t.wait_started()
    try:
        pod = pods.run("apidown", SHELL_FORM, grace_s=GRACE_S)
        v = delete_and_wait(k8s_node, t, pod.namespace, pod.name)
        assert v["verdict"] == "ignored_by_pid1", v
    finally:
        t.stop()
    err = t.stderr()
    assert "posting an Event failed" in err and "1 failed" in err, err[-2000:]
