"""The seed's scene and its helpers, shared by the Kubernetes tests: pods whose container runs
the toy server in shell form (`/bin/sh -c "server; echo done"`: a shell is PID 1) or exec form,
stopped with `kubectl delete pod` while `sigtrace --pod NS/NAME` traces them."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

from sigtrace.output.text import TextWriter
from tests.k8s.cluster import Node
from tests.tracing import Tracer

Record = dict[str, Any]
GRACE_S = 5
SHELL_FORM = ["/bin/sh", "-c", "/bin/server.sh; echo done"]
EXEC_FORM = ["/bin/server.sh"]
VERDICT_TIMEOUT_S = 15.0  # the settle window after PID 1's exit, and the sandbox's stop


def jsonl(text: str) -> list[Record]:
    """Whole JSON lines (a line still being written is skipped)."""
    return [json.loads(line) for line in text.splitlines() if line.endswith("}")]


def trace_pod(node: Node, namespace: str, name: str, tmp_path: Path) -> Tracer:
    """`sigtrace --pod NS/NAME --format jsonl` against the test node, tracing once returned."""
    t = Tracer(
        ["--pod", f"{namespace}/{name}"],
        tmp_path / f"{name}.jsonl",
        tmp_path / f"{name}.err",
        env=node.env,
    )
    t.wait_started()
    return t


def trace_delete(node: Node, namespace: str, name: str, tmp_path: Path) -> Tracer:
    """`sigtrace --pod NS/NAME` running while `kubectl delete pod` stops the pod; returns once
    the pod is gone and the tracer has written a verdict (or VERDICT_TIMEOUT_S passed)."""
    t = trace_pod(node, namespace, name, tmp_path)
    node.kubectl("-n", namespace, "delete", "pod", name, "--wait=true", timeout=90)
    deadline = time.monotonic() + VERDICT_TIMEOUT_S
    while time.monotonic() < deadline:
        if verdicts(jsonl(t.out_path.read_text())):
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
