"""The grace budget under kubelet 1.20: a preStop hook runs first and eats the grace period;
the app gets what is left (at least 2 s). containerd copies the kubelet's grace period and
preStop annotations into the bundle (scripts/k8s-node sets `container_annotations`), and every
verdict of the pod carries `grace`. An app that handles SIGTERM but needs 3 s to stop: graceful
with the whole 5 s, `prestop_ate_grace` when a hook past the grace period leaves it 2 s."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.k8s.cluster import Node, Pods
from tests.k8s.scenes import (
    GRACE_S,
    SHELL_FORM,
    Record,
    print_stories,
    trace_delete,
    verdicts,
)

pytestmark = [pytest.mark.k8s, pytest.mark.root]


# PID 1 handles TERM, then takes 3 s to stop (as slowstop.sh: `wait` returns on the signal).
SLOW_STOP = [
    "/bin/sh",
    "-c",
    "trap 'sleep 3; exit 0' TERM; echo ready; while :; do sleep 1 & wait; done",
]


def deleted_verdict(
    node: Node,
    pods: Pods,
    tmp_path: Path,
    prefix: str,
    prestop: list[str] | None,
    command: list[str] = SHELL_FORM,
    expect: str = "ignored_by_pid1",
) -> Record:
    """The one verdict of a pod (grace 5 s, this preStop hook) `kubectl delete`d."""
    pod = pods.run(prefix, command, grace_s=GRACE_S, prestop=prestop)
    records = trace_delete(node, pod.namespace, pod.name, tmp_path).stop()
    print_stories(records)
    (v,) = verdicts(records)
    assert v["verdict"] == expect, v
    return v


def test_a_2s_prestop_hook_leaves_a_3s_stop_window(
    k8s_node: Node, pods: Pods, tmp_path: Path
) -> None:
    v = deleted_verdict(k8s_node, pods, tmp_path, "prestop2", ["/bin/sleep", "2"])
    assert 2.5 <= v["wasted_s"] <= 3.5, v  # the window, not the pod's 5 s
    g = v["grace"]
    period, prestop, window = g["period_s"], g["prestop_s"], g["stop_window_s"]
    print(f"grace {period} s = preStop {prestop} s + stop window {window} s")
    assert (period, prestop, g["source"]) == (GRACE_S, 2.0, "bundle"), g
    assert 2.9 <= window <= 3.5, g


def test_a_prestop_hook_past_the_grace_period_leaves_the_kubelets_2s_floor(
    k8s_node: Node, pods: Pods, tmp_path: Path
) -> None:
    v = deleted_verdict(k8s_node, pods, tmp_path, "prestop10", ["/bin/sleep", "10"])
    assert 1.5 <= v["wasted_s"] <= 2.5, v
    g = v["grace"]
    # The hook's share is at least 3 s, perhaps all 5: the records do not tell which.
    assert (g["period_s"], g["prestop_s"], g["source"]) == (GRACE_S, None, "bundle"), g
    assert 1.9 <= g["stop_window_s"] <= 2.5, g
    # The signal was lost anyway: the verdict stays the shell's, more grace is not the fix.
    assert v["exit_code"] == 137, v


def test_a_slow_app_behind_a_hook_past_the_grace_period_is_prestop_ate_grace(
    k8s_node: Node, pods: Pods, tmp_path: Path
) -> None:
    v = deleted_verdict(
        k8s_node, pods, tmp_path, "ategrace", ["/bin/sleep", "10"], SLOW_STOP, "prestop_ate_grace"
    )
    assert v["exit_code"] == 137 and v["wasted_s"] == 0.0, v
    assert v["culprit"]["pid1"], v
    assert 1.9 <= v["grace"]["stop_window_s"] <= 2.5, v
    assert "at least 3 s of the 5 s grace period" in v["hint"], v


def test_the_same_slow_app_without_a_hook_stops_in_time(
    k8s_node: Node, pods: Pods, tmp_path: Path
) -> None:
    v = deleted_verdict(k8s_node, pods, tmp_path, "slownohook", None, SLOW_STOP, "graceful")
    assert v["exit_code"] == 0 and v["grace"]["prestop_s"] == 0.0, v


def test_without_a_hook_the_window_is_the_whole_period(
    k8s_node: Node, pods: Pods, tmp_path: Path
) -> None:
    v = deleted_verdict(k8s_node, pods, tmp_path, "nohook", None)
    g = v["grace"]
    assert (g["period_s"], g["prestop_s"], g["source"]) == (GRACE_S, 0.0, "bundle"), g
    assert GRACE_S - 0.1 <= g["stop_window_s"] <= GRACE_S + 0.5, g
