"""The grace budget from the kubelet's annotations, as kubelet 1.20 + containerd 1.6 wrote them
into a bundle (tests/data/k8s/bundle-annotations.json: grace 5 s, preStop exec `sleep 2`), and
the stop windows seen under that kubelet (tests/k8s): 3.01 s after a 2 s hook, 2.016 s (the
floor) after a hook that ran past the grace period, 5.007 s without a hook."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from sigtrace.containers.cache import ContainerCache
from sigtrace.kubegrace import (
    GRACE_PERIOD,
    PRESTOP_HANDLER,
    add_grace,
    budget_text,
    grace_budget,
    prestop_kind,
)
from sigtrace.output.text import TextWriter
from sigtrace.runner import with_pod_grace
from tests.unit.test_sandbox_story import ANNOTATIONS, APP_ID, SANDBOX_ID, Bundles, verdict
from tests.unit.test_stories import run

STORIES = Path(__file__).parents[1] / "data" / "stories"

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


# --- prestop_ate_grace: a slow_shutdown whose hook took a share of the grace period ----------


def recorded(name: str, **changes: object) -> dict:
    """The verdict of a recorded Docker story (tests/data/stories), as the stories tell it."""
    records = [json.loads(line) for line in (STORIES / f"{name}.jsonl").open()]
    return {**run(records)[0], **changes}


def test_a_slow_app_behind_a_hook_past_the_grace_period_is_prestop_ate_grace() -> None:
    # slowstop.sh traps TERM and takes longer than the 2.016 s it got: the kubelet's floor.
    v = add_grace(recorded("slowstop"), HOOKED)
    assert v["verdict"] == "prestop_ate_grace", v
    assert v["grace"] == budget(5, None, 2.016)
    assert v["hint"] == (
        "SIGTERM reached PID 1 `/bin/sh /bin/slowstop.sh` only after the preStop hook took "
        "at least 3 s of the 5 s grace period, leaving 2.0 s, and it was still shutting down "
        "when SIGKILL came: make the hook shorter, or raise `terminationGracePeriodSeconds` to "
        "cover the hook and the shutdown."
    )
    assert v["wasted_s"] == 0.0  # the hook used the time: none was wasted on a lost signal


def test_a_slow_app_after_a_2s_hook_is_prestop_ate_grace() -> None:
    v = add_grace(recorded("slowstop", grace_s=3.01), HOOKED)
    assert (v["verdict"], v["grace"]) == ("prestop_ate_grace", budget(5, 2.0, 3.01))
    assert "took 2.0 s of the 5 s grace period, leaving 3.0 s" in v["hint"]


@pytest.mark.parametrize(
    ("name", "annotations", "grace_s", "kept"),
    [
        ("slowstop", NO_HOOK, 2.016, "slow_shutdown"),  # no hook: the app was just slow
        ("slowstop", HOOKED, 5.007, "slow_shutdown"),  # a hook that took no whole second
        ("slowstop", HOOKED, None, "slow_shutdown"),  # no SIGKILL seen: the split is unknown
        ("shellform", HOOKED, 2.016, "ignored_by_pid1"),  # lost: more grace would not help
        ("noforward", HOOKED, 2.016, "not_forwarded"),  # never reached the app: the same
        ("execform", HOOKED, None, "graceful"),
    ],
)
def test_other_stops_keep_their_verdict(
    name: str, annotations: dict, grace_s: float | None, kept: str
) -> None:
    before = recorded(name, grace_s=grace_s)
    v = add_grace(dict(before), annotations)
    assert (v["verdict"], v["hint"]) == (kept, before["hint"])


def test_the_runner_hook_refines_a_pod_containers_slow_shutdown() -> None:
    cache = ContainerCache([Bundles()])
    v = with_pod_grace(cache, recorded("slowstop", container={"id": APP_ID}))
    assert v["verdict"] == "prestop_ate_grace"
    outside = with_pod_grace(cache, recorded("slowstop", container={"id": "ab" * 32}))
    assert outside["verdict"] == "slow_shutdown" and "grace" not in outside


@pytest.mark.parametrize(
    ("grace", "text"),
    [
        (budget(5, 2.0, 3.01), "grace 5 s = preStop 2.0 s + stop window 3.0 s"),
        (
            budget(5, None, 2.016),
            "grace 5 s = preStop at least 3 s + stop window 2.0 s (the kubelet's 2 s floor)",
        ),
        (budget(5, 0.0, 5.007), "grace 5 s = preStop none + stop window 5.0 s"),
        (budget(0, 0.0, 2.0), "grace 0 s = preStop none + stop window 2.0 s"),
        (
            budget(5, None, None),
            "grace 5 s, shared with the preStop hook (no SIGKILL showed the split)",
        ),
    ],
)
def test_budget_text(grace: dict, text: str) -> None:
    assert budget_text(grace) == text


def test_the_text_story_says_the_budget() -> None:
    v = add_grace(recorded("slowstop", grace_s=3.01), HOOKED)
    story = TextWriter(io.StringIO()).line(v) or ""
    assert (
        "  verdict: prestop_ate_grace: the preStop hook ate the grace period: SIGKILL 3.01 s"
        in story
    )
    assert "\n  grace 5 s = preStop 2.0 s + stop window 3.0 s\n  fix: SIGTERM reached" in story
