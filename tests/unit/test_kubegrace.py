"""The grace budget from the kubelet's annotations, as kubelet 1.20 + containerd 1.6 wrote them
into a bundle (tests/data/k8s/bundle-annotations.json: grace 5 s, preStop exec `sleep 2`), and
the stop windows seen under that kubelet (tests/k8s): 3.01 s after a 2 s hook, 2.016 s (the
floor) after a hook that ran past the grace period, 5.007 s without a hook."""

from __future__ import annotations

import pytest

from sigtrace.containers.cache import ContainerCache
from sigtrace.kubegrace import GRACE_PERIOD, PRESTOP_HANDLER, add_grace, grace_budget, prestop_kind
from sigtrace.runner import with_pod_grace
from tests.unit.test_sandbox_story import ANNOTATIONS, APP_ID, SANDBOX_ID, Bundles, verdict

HOOKED = ANNOTATIONS["container"]
NO_HOOK = {k: v for k, v in HOOKED.items() if k != PRESTOP_HANDLER}


def budget(period: int, prestop: float | None, window: float | None) -> dict:
    return {"period_s": period, "prestop_s": prestop, "stop_window_s": window, "source": "bundle"}


def test_a_2s_hook_leaves_a_3s_window() -> None:
    assert grace_budget(HOOKED, 3.01) == budget(5, 2.0, 3.01)


def test_a_hook_that_ran_past_the_grace_period_leaves_the_floor_and_an_unknown_share() -> None:
    assert grace_budget(HOOKED, 2.016) == budget(5, None, 2.016)


def test_with_a_hook_and_no_kill_the_split_is_not_visible() -> None:
    assert grace_budget(HOOKED, None) == budget(5, None, None)


def test_without_a_hook_the_window_is_the_period() -> None:
    assert grace_budget(NO_HOOK, None) == budget(5, 0.0, 5.0)
    assert grace_budget(NO_HOOK, 5.007) == budget(5, 0.0, 5.007)
    # Force delete: the kubelet's own kill came inside its 2 s floor; what was seen is kept.
    assert grace_budget(NO_HOOK, 1.379) == budget(5, 0.0, 1.379)
    # A period under the kubelet's floor still gets 2 s.
    assert grace_budget({GRACE_PERIOD: "0"}, None) == budget(0, 0.0, 2.0)


@pytest.mark.parametrize("raw", ["", "-1", "5s", "1e3", " "])
def test_a_period_that_is_not_a_count_is_no_budget(raw: str) -> None:
    assert grace_budget({GRACE_PERIOD: raw}, None) is None


def test_the_sandbox_carries_no_period() -> None:
    assert grace_budget(ANNOTATIONS["sandbox"], None) is None


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ('{"exec":{"command":["/bin/sleep","2"]}}', "exec"),
        ('{"httpGet":{"path":"/drain","port":8080}}', "httpGet"),
        ('{"tcpSocket":{"port":8080}}', "tcpSocket"),
        ("{}", None),
        ("[1]", None),
        ("not json", None),
        ('{"exec":null}', None),
    ],
)
def test_prestop_kind(raw: str, kind: str | None) -> None:
    assert prestop_kind({PRESTOP_HANDLER: raw}) == kind


def test_add_grace_only_where_there_is_a_period() -> None:
    assert add_grace({"grace_s": 3.01}, HOOKED)["grace"] == budget(5, 2.0, 3.01)
    assert "grace" not in add_grace({"grace_s": 3.01}, {})


def test_a_pod_containers_verdict_gets_its_budget_from_the_runtime_record() -> None:
    cache = ContainerCache([Bundles()])
    v = with_pod_grace(cache, {**verdict(APP_ID), "grace_s": 3.01})
    assert v["grace"] == budget(5, 2.0, 3.01)
    assert "grace" not in with_pod_grace(cache, verdict(SANDBOX_ID))
    assert "grace" not in with_pod_grace(cache, verdict("ab" * 32))  # not known: no pod
