"""The seed's scene under a real kubelet: `kubectl delete pod` of a pod whose PID 1 is
`/bin/sh -c "server; ..."`, traced by `sigtrace --pod NS/NAME`.

kubelet 1.20 stops a container with CRI StopContainer(timeout = the pod's grace period, here
5 s, less what a preStop hook took): containerd's runc sends SIGTERM, then SIGKILL when the
timeout runs out; then the sandbox (pause) is stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.k8s.cluster import Node, Pods
from tests.k8s.scenes import (
    EXEC_FORM,
    GRACE_S,
    SHELL_FORM,
    VERDICT_TIMEOUT_S,
    jsonl,
    pod_identity,
    print_stories,
    trace_delete,
    trace_pod,
    verdicts,
)

pytestmark = [pytest.mark.k8s, pytest.mark.root]


def test_shell_form_pid1_ignores_kubelets_sigterm(
    k8s_node: Node, pods: Pods, tmp_path: Path
) -> None:
    pod = pods.run("seed", SHELL_FORM, grace_s=GRACE_S)
    records = trace_delete(k8s_node, pod.namespace, pod.name, tmp_path).stop()
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
    records = trace_delete(k8s_node, pod.namespace, pod.name, tmp_path).stop()
    print_stories(records)

    (v,) = verdicts(records)
    assert v["verdict"] == "graceful", v
    assert v["exit_code"] == 0, v
    assert v["wasted_s"] == 0, v
    assert pod_identity(v) == (pod.namespace, pod.name, pod.container), v["container"]


def test_force_delete_still_sends_sigterm_then_the_kubelet_kills(
    k8s_node: Node, pods: Pods, tmp_path: Path
) -> None:
    """`kubectl delete --grace-period=0 --force` under kubelet 1.20: the pod is gone from the
    API at once, but the kubelet still stops the container with its 2 s floor (runc's SIGTERM,
    dropped by the shell), and its orphaned-pod cleanup SIGKILLs the pod's processes itself,
    within that window: not a kill without a stop signal."""
    pod = pods.run("force", SHELL_FORM, grace_s=GRACE_S)
    t = trace_pod(k8s_node, pod.namespace, pod.name, tmp_path)
    k8s_node.kubectl("-n", pod.namespace, "delete", "pod", pod.name, "--grace-period=0", "--force")
    deadline = time.monotonic() + VERDICT_TIMEOUT_S
    while not verdicts(jsonl(t.out_path.read_text())) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # the sandbox's end
    records = t.stop()
    print_stories(records)

    (v,) = verdicts(records)
    assert v["verdict"] == "ignored_by_pid1" and v["exit_code"] == 137, v
    assert v["wasted_s"] <= 2.5, v  # the kubelet's floor, not the pod's 5 s
    assert pod_identity(v) == (pod.namespace, pod.name, pod.container)
    pid1 = v["pid1"]["pid"]
    kills = [
        r
        for r in records
        if r["type"] == "signal" and r["signal"] == "SIGKILL" and r["target"]["pid"] == pid1
    ]
    # Who: runc (StopContainer's timeout) or, first here, the kubelet's own cleanup.
    print("SIGKILL to PID 1 from", [k["sender"]["comm"] for k in kills])
    assert kills and kills[0]["sender"]["comm"] in ("kubelet", "runc"), kills


def test_a_failing_liveness_probe_tells_a_story_per_restart(
    k8s_node: Node, pods: Pods, tmp_path: Path
) -> None:
    """The kubelet kills and restarts the container on each probe failure, with the pod's
    grace period (3 s here): every restart is a stop of its own, with its own container id."""
    pod = pods.run(
        "liveness",
        SHELL_FORM,
        grace_s=3,
        restart_policy="Always",
        liveness={
            "exec": {"command": ["/bin/false"]},
            "initialDelaySeconds": 4,
            "periodSeconds": 2,
            "failureThreshold": 1,
        },
    )
    t = trace_pod(k8s_node, pod.namespace, pod.name, tmp_path)
    deadline = time.monotonic() + 45
    while len(verdicts(jsonl(t.out_path.read_text()))) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    records = t.stop()
    print_stories(records)

    vs = verdicts(records)
    assert len(vs) >= 2, [v["verdict"] for v in vs]
    assert len({v["container"]["id"] for v in vs}) == len(vs)  # a new container each time
    for v in vs:
        assert v["verdict"] == "ignored_by_pid1" and v["exit_code"] == 137, v
        assert 2.5 <= v["wasted_s"] <= 3.5, v
        assert pod_identity(v) == (pod.namespace, pod.name, pod.container)
    restarts = k8s_node.get("pod", pod.name)["status"]["containerStatuses"][0]["restartCount"]
    assert restarts >= len(vs) - 1, restarts
