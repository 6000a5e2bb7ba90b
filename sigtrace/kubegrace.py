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

Pure: annotations and numbers in, a dict out. Verdicts of containers outside pods, or of
pods whose grace period the node does not show, get no `grace`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

GRACE_PERIOD = "io.kubernetes.pod.terminationGracePeriod"
PRESTOP_HANDLER = "io.kubernetes.container.preStopHandler"
MIN_STOP_WINDOW_S = 2  # the kubelet's minimumGracePeriodInSeconds
SOURCE_BUNDLE = "bundle"


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


def grace_budget(annotations: Mapping[str, str], seen_window_s: float | None) -> dict | None:
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


def add_grace(verdict: dict, annotations: Mapping[str, str]) -> dict:
    """The verdict with `grace` added when its container's annotations carry a grace period."""
    budget = grace_budget(annotations, verdict.get("grace_s"))
    if budget is not None:
        verdict["grace"] = budget
    return verdict
