"""`sigtrace daemon --k8s-events`: each non-graceful verdict of a pod container becomes a
Kubernetes Event on the pod, where `kubectl describe pod` and `kubectl get events` show it.

The record path never waits for the API: `observe` turns a verdict into an Event (pure) and
puts it on a bounded queue, or counts it dropped (the queue full, or over the rate: a burst of
BURST, then one every 1/RATE_PER_S s); one thread posts them. A post that fails is counted
and logged once per run of failures (and once when posting works again): tracing goes on.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from sigtrace import verdicts
from sigtrace.k8s_api import Event, EventSource, ObjectReference
from sigtrace.log import Log

BURST = 10
RATE_PER_S = 1.0
QUEUE_SIZE = 64
MESSAGE_MAX = 1024  # what events.k8s.io accepts; core/v1 Events are cut short the same way
COMPONENT = "sigtrace"


def event_for(verdict: dict[str, Any], node: str | None) -> Event | None:
    """The Event (core/v1) for a verdict record, or None when it is graceful or of no pod."""
    name = verdict.get("verdict")
    pod = (verdict.get("container") or {}).get("pod") or {}
    if not name or name == "graceful" or not pod.get("name") or not pod.get("namespace"):
        return None
    sig = verdict.get("stop_signal")
    culprit = verdict.get("culprit") or {}
    what = verdicts.line(
        name,
        sig=sig,
        wasted=verdict.get("wasted_s"),
        grace=verdict.get("grace_s"),
        code=verdict.get("exit_code"),
        culprit="PID 1" if not culprit or culprit.get("pid1") else culprit.get("comm") or "?",
    )
    container = pod.get("container")
    message = f"container {container}: {what}. Fix: {verdict.get('hint') or ''}"
    if len(message) > MESSAGE_MAX:
        message = message[: MESSAGE_MAX - 3] + "..."
    involved: ObjectReference = {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": pod["namespace"],
        "name": pod["name"],
    }
    if pod.get("uid"):
        involved["uid"] = pod["uid"]
    if container:
        involved["fieldPath"] = f"spec.containers{{{container}}}"
    source: EventSource = {"component": COMPONENT}
    if node:
        source["host"] = node
    stamp = str(verdict.get("time") or "")[:19] + "Z"  # RFC 3339, whole seconds
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{pod['name']}.sigtrace-", "namespace": pod["namespace"]},
        "involvedObject": involved,
        "reason": verdicts.event_reason(name, sig),
        "message": message,
        "type": "Warning",
        "source": source,
        "reportingComponent": COMPONENT,
        "reportingInstance": node or "",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class TokenBucket:
    def __init__(self, burst: int, per_s: float, clock: Callable[[], float] = time.monotonic):
        self.burst, self.per_s, self.clock = burst, per_s, clock
        self.tokens = float(burst)
        self.at = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_s)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class EventPoster:
    """observe(record) on the record path; a thread posts. post(event) raises on failure."""

    def __init__(
        self,
        post: Callable[[Event], None],
        log: Log,
        node: str | None,
        bucket: TokenBucket | None = None,
        size: int = QUEUE_SIZE,
    ) -> None:
        self.post = post
        self.log = log
        self.node = node
        self.bucket = bucket or TokenBucket(BURST, RATE_PER_S)
        self.queue: queue.Queue[Event | None] = queue.Queue(size)
        self.counts = {"posted": 0, "failed": 0, "dropped": 0, "rate_limited": 0}
        self.failing = False
        self.thread = threading.Thread(target=self._run, name="k8s-events", daemon=True)

    def start(self) -> EventPoster:
        self.thread.start()
        return self

    def observe(self, rec: dict[str, Any]) -> None:
        if rec.get("type") != "verdict":
            return
        event = event_for(rec, self.node)
        if event is None:
            return
        if not self.bucket.take():
            self.counts["rate_limited"] += 1
            return
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.counts["dropped"] += 1

    def _run(self) -> None:
        while (event := self.queue.get()) is not None:
            try:
                self.post(event)
            except Exception as e:  # whatever the API (or the network) does, tracing goes on
                self.counts["failed"] += 1
                if not self.failing:
                    self.failing = True
                    self.log.error(
                        f"--k8s-events: posting an Event failed: {e}; still tracing, counting "
                        "the Events not posted",
                        reason=event["reason"],
                    )
                continue
            self.counts["posted"] += 1
            if self.failing:
                self.failing = False
                self.log.info(
                    f"--k8s-events: posting works again; {self.counts['failed']} not posted so far",
                    failed=self.counts["failed"],
                )

    def close(self, timeout_s: float = 2.0) -> dict[str, int]:
        """Posts what is queued for at most timeout_s (a stop is not held up by the API)."""
        with contextlib.suppress(queue.Full):
            self.queue.put(None, timeout=timeout_s)
        if self.thread.is_alive():
            self.thread.join(timeout_s)
        return dict(self.counts)
