"""The seed's scene under a real kubelet: `kubectl delete pod` of a pod whose PID 1 is
`/bin/sh -c "server; ..."`, traced by `sigtrace --pod NS/NAME`.

kubelet 1.20 stops a container with CRI StopContainer(timeout = the pod's grace period, here
5 s, less what a preStop hook took): containerd's runc sends SIGTERM, then SIGKILL when the
timeout runs out; then the sandbox (pause) is stopped.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sigtrace.output.text import TextWriter
from tests.tracing import Tracer

if TYPE_CHECKING:  # types only: several conftest.py modules share the name at run time
    from conftest import Node, Pod, Pods

pytestmark = [pytest.mark.k8s, pytest.mark.root]

Record = dict[str, Any]
GRACE_S = 5
SHELL_FORM = ["/bin/sh", "-c", "/bin/server.sh; echo done"]
EXEC_FORM = ["/bin/server.sh"]
VERDICT_TIMEOUT_S = 15.0  # the settle window after PID 1's exit, and the sandbox's stop


def _records(path: Path) -> list[Record]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def trace_delete(node: Node, pod: Pod, tmp_path: Path, fmt: str = "jsonl") -> Tracer:
    """`sigtrace --pod NS/NAME` running while `kubectl delete pod` stops the pod; returns once
    the pod is gone and the tracer has written a verdict (or VERDICT_TIMEOUT_S passed)."""
    t = Tracer(
        ["--pod", f"{pod.namespace}/{pod.name}"],
        tmp_path / f"{pod.name}.jsonl",
        tmp_path / f"{pod.name}.err",
        env=node.env,
    )
    t.wait_started()
    node.kubectl("-n", pod.namespace, "delete", "pod", pod.name, "--wait=true", timeout=90)
    deadline = time.monotonic() + VERDICT_TIMEOUT_S
    while time.monotonic() < deadline:
        if any(r["type"] == "verdict" for r in _records(t.out_path)):
            break
        time.sleep(0.2)
    # The sandbox's stop comes after the container's: let it land before ending the trace.
    time.sleep(3)
    return t


def verdicts(records: list[Record]) -> list[Record]:
    return [r for r in records if r["type"] == "verdict"]


def pod_identity(v: Record) -> tuple[str | None, str | None, str | None]:
    pod = v["container"].get("pod") or {}
    return pod.get("namespace"), pod.get("name"), pod.get("container")


def print_stories(records: list[Record]) -> None:
    """The stories as sigtrace's text output prints them (seen with `pytest -s`)."""
    writer = TextWriter(io.StringIO())
    for v in verdicts(records):
        print(writer.line(v))


def test_shell_form_pid1_ignores_kubelets_sigterm(
    k8s_node: Node, pods: Pods, tmp_path: Path
) -> None:
    pod = pods.run("seed", SHELL_FORM, grace_s=GRACE_S)
    records = trace_delete(k8s_node, pod, tmp_path).stop()
    print_stories(records)

    # The sandbox was stopped under the trace (SIGKILL, no SIGTERM: `runc kill --all`), and
    # told no story of its own: one verdict, the app's.
    pause_kills = [
        r
        for r in records
        if r["type"] == "signal" and r["signal"] == "SIGKILL" and r["target"]["comm"] == "pause"
    ]
    assert pause_kills, "the pause container's stop was not traced"
    (v,) = verdicts(records)
    assert v["verdict"] == "ignored_by_pid1", v
    assert v["exit_code"] == 137, v
    # kubelet gave StopContainer the whole grace period (no preStop): SIGKILL ~5 s after SIGTERM.
    assert GRACE_S - 1.0 <= v["wasted_s"] <= GRACE_S + 0.5, v
    # The pod's identity as the kubelet gave it to the runtime (CRI sandbox metadata).
    assert pod_identity(v) == (pod.namespace, pod.name, pod.container), v["container"]
    assert v["container"]["pod"]["uid"] == pod.uid
    assert v["container"]["runtime"] == "containerd"


def test_exec_form_stops_gracefully(k8s_node: Node, pods: Pods, tmp_path: Path) -> None:
    pod = pods.run("execform", EXEC_FORM, grace_s=GRACE_S)
    records = trace_delete(k8s_node, pod, tmp_path).stop()
    print_stories(records)

    (v,) = verdicts(records)
    assert v["verdict"] == "graceful", v
    assert v["exit_code"] == 0, v
    assert v["wasted_s"] == 0, v
    assert pod_identity(v) == (pod.namespace, pod.name, pod.container), v["container"]
