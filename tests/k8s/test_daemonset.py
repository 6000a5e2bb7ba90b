"""The DaemonSet of packaging/kubernetes/sigtrace.yaml on the test node, with the image
packaging/build-image.sh builds from this checkout: the daemon gets ready on /healthz, writes
the seed scene's verdict to its log, answers the kubectl plugin (packaging/kubectl-sigtrace:
`kubectl sigtrace explain|logs NS/POD`), and stops gracefully (exit 0) when its own pod is
deleted (checked with sigtrace on the host).

What is changed for the test node, and why (in `for_test_node`; nothing else is):
- image: the locally built one, imagePullPolicy Never (nothing can be pulled here);
- hostNetwork: the node has no CNI plugin, so only hostNetwork pods get a sandbox;
- metrics on port 19090, not 9090 (a host port now; other tests' daemons may hold 9090);
- the `containerd` hostPath: this node's containerd state, not the host's /run/containerd.
podmonitor.yaml is not applied: the node has no prometheus-operator CRDs.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sigtrace.timefmt import parse_time
from tests.k8s.cluster import Node, Pod, Pods
from tests.k8s.scenes import (
    EXEC_FORM,
    GRACE_S,
    SHELL_FORM,
    jsonl,
    pod_identity,
    print_stories,
    trace_delete,
    verdicts,
)

pytestmark = [pytest.mark.k8s, pytest.mark.root, pytest.mark.docker]

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "packaging" / "kubernetes" / "sigtrace.yaml"
IMAGE = "k8s-sigtrace:test"
IMAGE_REF = f"docker.io/library/{IMAGE}"
METRICS_PORT = 19090
NAMESPACE = "sigtrace"
SELECTOR = "app.kubernetes.io/name=sigtrace"
BUILD_TIMEOUT_S = 1800.0  # a first build debootstraps the base image
READY_TIMEOUT_S = 90.0
LOG_TIMEOUT_S = 30.0


def for_test_node(docs: list[dict[str, Any]], containerd_state: str) -> list[dict[str, Any]]:
    """The manifest's documents with the test node's changes (see the module docstring)."""
    for doc in docs:
        if doc["kind"] != "DaemonSet":
            continue
        spec = doc["spec"]["template"]["spec"]
        spec["hostNetwork"] = True
        (c,) = spec["containers"]
        c["image"] = IMAGE_REF
        c["imagePullPolicy"] = "Never"
        c["args"] = ["--metrics", f"0.0.0.0:{METRICS_PORT}"]
        (port,) = c["ports"]
        port["containerPort"] = METRICS_PORT
        (vol,) = [v for v in spec["volumes"] if v["name"] == "containerd"]
        vol["hostPath"]["path"] = containerd_state
    return docs


@pytest.fixture(scope="module")
def sigtrace_image(k8s_node: Node) -> str:
    """This checkout's image, built by packaging/build-image.sh and imported into the node."""
    r = subprocess.run(
        [str(REPO / "packaging" / "build-image.sh")],
        env={**os.environ, "IMAGE": IMAGE},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if r.returncode != 0:
        pytest.fail(f"packaging/build-image.sh failed:\n{r.stderr[-2000:]}", pytrace=False)
    save = subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE)
    ctr = ["ctr", "--address", k8s_node.env["K8S_CONTAINERD_SOCK"], "-n", "k8s.io"]
    imp = subprocess.run(
        [*ctr, "images", "import", "-"],
        stdin=save.stdout,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert save.wait(60) == 0 and imp.returncode == 0, imp.stderr
    return IMAGE_REF


def daemon_pods(node: Node) -> list[dict[str, Any]]:
    out = node.kubectl("-n", NAMESPACE, "get", "pods", "-l", SELECTOR, "-o", "json")
    return [p for p in yaml.safe_load(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def healthz() -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/healthz", timeout=2) as r:
            return r.status
    except OSError:
        return None


@pytest.fixture(scope="module")
def daemon(k8s_node: Node, sigtrace_image: str) -> Iterator[str]:
    """The DaemonSet applied; yields its pod's name once /healthz answers 200."""
    state = str(Path(k8s_node.env["SIGTRACE_CONTAINERD_STATE"]).parent)
    docs = for_test_node([d for d in yaml.safe_load_all(MANIFEST.read_text()) if d], state)
    k8s_node.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            running = [p for p in daemon_pods(k8s_node) if p["status"].get("phase") == "Running"]
            if running and healthz() == 200:
                yield running[0]["metadata"]["name"]
                return
            time.sleep(1)
        pods = k8s_node.kubectl("-n", NAMESPACE, "get", "pods", "-o", "wide")
        pytest.fail(f"the daemon was not ready within {READY_TIMEOUT_S} s:\n{pods}", pytrace=False)
    finally:
        k8s_node.kubectl("-n", NAMESPACE, "delete", "daemonset", "sigtrace", timeout=120)


def daemon_log(node: Node, pod: str) -> list[dict[str, Any]]:
    return jsonl(node.kubectl("-n", NAMESPACE, "logs", pod))


def test_daemon_tells_the_seed_story(
    k8s_node: Node, daemon: str, pods: Pods, tmp_path: Path
) -> None:
    app: Pod = pods.run("ds-seed", SHELL_FORM, grace_s=GRACE_S)
    # The host's own trace, to know when the stop is over.
    trace_delete(k8s_node, app.namespace, app.name, tmp_path).stop()

    def mine(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [v for v in verdicts(records) if pod_identity(v)[1] == app.name]

    deadline = time.monotonic() + LOG_TIMEOUT_S
    while not mine(records := daemon_log(k8s_node, daemon)) and time.monotonic() < deadline:
        time.sleep(1)
    print_stories(mine(records))
    (v,) = mine(records)
    assert v["verdict"] == "ignored_by_pid1" and v["exit_code"] == 137, v
    assert GRACE_S - 1.0 <= v["wasted_s"] <= GRACE_S + 0.5, v
    assert pod_identity(v) == (app.namespace, app.name, app.container)
    assert v["node"] == k8s_node.name  # NODE_NAME from the downward API


def kubectl_sigtrace(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl sigtrace ARGS` with packaging/ on PATH: kubectl finds the plugin there."""
    path = f"{REPO / 'packaging'}:{node.env.get('PATH', os.environ['PATH'])}"
    return subprocess.run(
        ["kubectl", "sigtrace", *args],
        env={**os.environ, **node.env, "PATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_kubectl_plugin_explains_on_the_pods_node_and_shows_its_records(
    k8s_node: Node, daemon: str, pods: Pods, tmp_path: Path
) -> None:
    shell = pods.run("plugin-shell", SHELL_FORM, grace_s=GRACE_S)
    execf = pods.run("plugin-exec", EXEC_FORM, grace_s=GRACE_S)
    r = kubectl_sigtrace(k8s_node, "explain", f"{shell.namespace}/{shell.name}")
    print(
        f"$ kubectl sigtrace explain {shell.namespace}/{shell.name}  -> {r.returncode}\n{r.stdout}"
    )
    assert r.returncode == 10 and "ignored_by_pid1" in r.stdout, (r.stdout, r.stderr)
    r = kubectl_sigtrace(k8s_node, "explain", f"{execf.namespace}/{execf.name}")
    assert r.returncode == 0, (r.stdout, r.stderr)
    r = kubectl_sigtrace(k8s_node, "explain", f"{shell.namespace}/no-such-pod")
    assert r.returncode == 2 and "no pod" in r.stderr, (r.stdout, r.stderr)

    r = kubectl_sigtrace(k8s_node, "logs", f"{shell.namespace}/{shell.name}")
    assert r.returncode == 0 and not verdicts(jsonl(r.stdout)), r  # running: no story yet
    # Once deleted, the pod's node is not known: every node's records about it.
    trace_delete(k8s_node, shell.namespace, shell.name, tmp_path).stop()
    deadline = time.monotonic() + LOG_TIMEOUT_S
    while True:
        r = kubectl_sigtrace(k8s_node, "logs", f"{shell.namespace}/{shell.name}")
        assert r.returncode == 0, r.stderr
        records = jsonl(r.stdout)
        if verdicts(records) or time.monotonic() > deadline:
            break
        time.sleep(1)
    print(f"$ kubectl sigtrace logs {shell.namespace}/{shell.name}: {len(records)} records")
    print_stories(records)
    (v,) = verdicts(records)
    assert v["verdict"] == "ignored_by_pid1" and pod_identity(v)[1] == shell.name, v
    # Only records about that pod: each names it somewhere.
    assert all(f'"name":"{shell.name}"' in line for line in r.stdout.splitlines()), r.stdout


def test_daemon_stops_gracefully_when_its_pod_is_deleted(
    k8s_node: Node, daemon: str, tmp_path: Path
) -> None:
    grace = daemon_pods(k8s_node)[0]["spec"]["terminationGracePeriodSeconds"]
    records = trace_delete(k8s_node, NAMESPACE, daemon, tmp_path).stop()

    def in_daemon_pod(proc: dict[str, Any]) -> bool:
        return pod_identity({"container": proc.get("container") or {}})[:2] == (NAMESPACE, daemon)

    # hostPID: the daemon is no PID 1 of a pid namespace of its own, so no termination story
    # is told for it (stories follow a namespace's init); its records tell the stop instead.
    sent = [r for r in records if r["type"] == "signal" and in_daemon_pod(r["target"])]
    term = [r for r in sent if r["signal"] == "SIGTERM" and r["target"]["comm"] == "sigtrace"]
    assert term and term[0]["outcome"] == "delivered", sent
    assert term[0]["sender"]["comm"] == "runc", term[0]
    pid = term[0]["target"]["pid"]
    (ex,) = [r for r in records if r["type"] == "exit" and r["process"]["pid"] == pid]
    assert ex["exit_code"] == 0 and ex["signal"] is None, ex
    took = (parse_time(ex["time"]) - parse_time(term[0]["time"])) / 1e9
    print(f"sigtrace daemon: SIGTERM -> exit 0 in {took:.3f} s (grace {grace} s)")
    assert took < grace == 10, took  # the manifest's grace period
    assert not [r for r in sent if r["signal"] == "SIGKILL" and r["target"]["pid"] == pid]
