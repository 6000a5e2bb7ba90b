"""The grace budget of a Kubernetes container's stop: how the kubelet split the pod's
terminationGracePeriodSeconds between the preStop hook and the stop window it left the app.

The kubelet (1.20 through current) stops a container so: run the preStop hook, if any, with the
grace period as its timeout; then CRI StopContainer(timeout = the grace period less the hook's
whole seconds, at least 2 s), i.e. the stop signal, then SIGKILL when that window runs out.

What the node shows: the kubelet writes `io.kubernetes.pod.terminationGracePeriod` and
`io.kubernetes.container.preStopHandler` (JSON) into each container's annotations; CRI-O copies
them into the bundle's config.json, containerd when its runtime has `container_annotations`
for them. From those and the story's stop signal and SIGKILL:

- `period_s`: the pod spec's grace period (a `kubectl delete --grace-period=N` is not there);
- `stop_window_s`: stop signal -> the runtime's SIGKILL, as seen; without a SIGKILL (the app
  stopped in time), the kubelet's rule when the hook's share is known, else null;
- `prestop_s`: 0 without a hook; with one, the period less the seen window, rounded to the
  kubelet's whole seconds; null when no window was seen, or when it was the 2 s floor (the hook
  took at least period - 2 s, maybe all of it: how much is not visible in the records);
- `source`: where the period and hook came from (`bundle`: the runtime's annotations).

A `slow_shutdown` whose budget shows the hook took a share of the grace period (the window
seen is shorter than the period, or is the kubelet's 2 s floor) becomes `prestop_ate_grace`: the
app got the stop signal and was SIGKILLed within what the hook left it. Other verdicts stay:
the stop signal lost (`ignored_by_pid1`, `not_forwarded`, ...) is lost however long the
window, so more grace is not their fix.

Pure: annotations and numbers in, a dict out. Verdicts of containers outside pods, or of
pods whose grace period the node does not show, get no `grace`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypedDict

from sigtrace import story_text, verdicts

GRACE_PERIOD = "io.kubernetes.pod.terminationGracePeriod"
PRESTOP_HANDLER = "io.kubernetes.container.preStopHandler"
MIN_STOP_WINDOW_S = 2  # the kubelet's minimumGracePeriodInSeconds
SOURCE_BUNDLE = "bundle"
PRESTOP_ATE_GRACE = "prestop_ate_grace"  # sigtrace/verdicts.py


def grace_period(annotations: Mapping[str, str]) -> int | None:
    """The pod's terminationGracePeriodSeconds, or None when absent or not a count."""
    raw = annotations.get(GRACE_PERIOD)
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw)


def prestop_kind(annotations: Mapping[str, str]) -> str | None:
    """`exec`, `httpGet` or `tcpSocket` (the handler's one key), or None without a hook.
    An annotation that is not a JSON object counts as no hook (it is untrusted text)."""
    raw = annotations.get(PRESTOP_HANDLER)
    if not raw:
        return None
    try:
        handler = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(handler, dict):
        return None
    kinds = [k for k in ("exec", "httpGet", "tcpSocket") if handler.get(k) is not None]
    return kinds[0] if kinds else None


class GraceBudget(TypedDict):
    """A verdict's `grace` field."""

    period_s: int
    prestop_s: float | None  # None: the hook's share is not visible (no SIGKILL, or at the floor)
    stop_window_s: float | None  # None: no SIGKILL seen
    source: str


def grace_budget(annotations: Mapping[str, str], seen_window_s: float | None) -> GraceBudget | None:
    """The `grace` field of a verdict, or None when the container carries no grace period.
    seen_window_s: the story's stop signal -> SIGKILL (its `grace_s`), None without a kill."""
    period = grace_period(annotations)
    if period is None:
        return None
    hook = prestop_kind(annotations)
    prestop: float | None
    window: float | None = seen_window_s
    if hook is None:
        prestop = 0.0
        if window is None:
            window = float(max(period, MIN_STOP_WINDOW_S))
    elif window is None or round(window) <= MIN_STOP_WINDOW_S:
        prestop = None
    else:
        prestop = float(max(period - round(window), 0))
    return {
        "period_s": period,
        "prestop_s": prestop,
        "stop_window_s": None if window is None else round(window, 3),
        "source": SOURCE_BUNDLE,
    }


def hook_share(budget: GraceBudget) -> str:
    """The preStop hook's share as text: `2.0 s`, `at least 3 s` (at the floor), `none`."""
    prestop, window = budget.get("prestop_s"), budget.get("stop_window_s")
    if prestop is not None:
        return f"{prestop:.1f} s" if prestop else "none"
    if window is not None and round(window) <= MIN_STOP_WINDOW_S:
        return f"at least {max(budget['period_s'] - MIN_STOP_WINDOW_S, 0)} s"
    return "an unseen share"


def budget_text(budget: GraceBudget) -> str:
    """`grace 5 s = preStop 2.0 s + stop window 3.0 s` (text output)."""
    period, window = budget["period_s"], budget.get("stop_window_s")
    if window is None:
        return f"grace {period} s, shared with the preStop hook (no SIGKILL showed the split)"
    floor = round(window) <= MIN_STOP_WINDOW_S < period
    more = " (the kubelet's 2 s floor)" if floor else ""
    return f"grace {period} s = preStop {hook_share(budget)} + stop window {window:.1f} s{more}"


def hook_ate_grace(verdict: Mapping[str, Any], annotations: Mapping[str, str]) -> bool:
    """A slow_shutdown whose preStop hook took a share of the grace period first."""
    budget = verdict.get("grace")
    if verdict.get("verdict") != "slow_shutdown" or not budget or prestop_kind(annotations) is None:
        return False
    if budget.get("stop_window_s") is None:
        return False  # no SIGKILL seen: the split is not visible
    return budget.get("prestop_s") is None or budget["prestop_s"] > 0


def add_grace(verdict: dict[str, Any], annotations: Mapping[str, str]) -> dict[str, Any]:
    """The verdict with `grace` added when its container's annotations carry a grace period,
    and a slow_shutdown told as prestop_ate_grace when the hook ate into that period."""
    budget = grace_budget(annotations, verdict.get("grace_s"))
    if budget is None:
        return verdict
    verdict["grace"] = budget
    if hook_ate_grace(verdict, annotations):
        window = budget["stop_window_s"]
        verdict["verdict"] = PRESTOP_ATE_GRACE
        verdict["hint"] = verdicts.hint(
            PRESTOP_ATE_GRACE,
            sig=verdict.get("stop_signal") or "the stop signal",
            culprit=story_text.who(verdict.get("culprit") or verdict.get("pid1")),
            hook=hook_share(budget),
            period=budget["period_s"],
            window=f"{window:.1f}",
        )
    return verdict
