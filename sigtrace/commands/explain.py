"""`sigtrace explain`: what a stop of this container will do, before anyone sends anything.

The runtime names the container (its PID 1 and STOPSIGNAL), sigtrace/proctree.py reads the
tree below PID 1 and each process's dispositions from /proc, sigtrace/predict.py decides.
Exit code 0 when a graceful stop is expected, 10 when not, 12 when the prediction is not sure
enough either way (what decides it cannot be seen in /proc), so that a CI pipeline can gate
on it. This module only wires the options to those functions and writes the records.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

import click

from sigtrace import SCHEMA, signals
from sigtrace.errors import ContainerNotFound, UsageError
from sigtrace.escape import printable
from sigtrace.predict import (
    EXIT_NOT_GRACEFUL,
    EXIT_UNSURE,
    Prediction,
    Proc,
    Snapshot,
    descendants,
    predict,
)
from sigtrace.procfs import Procfs
from sigtrace.proctree import read_proc
from sigtrace.timefmt import Clock

if TYPE_CHECKING:
    from sigtrace.containers.records import RuntimeContainer
    from sigtrace.enrich import ContainerObject


def _proc_row(p: Proc, depth: int) -> dict[str, Any]:
    return {
        "pid": p.pid,
        "ns_pid": p.ns_pid,
        "comm": p.comm,
        "cmdline": p.cmdline,
        "depth": depth,
        "handles": p.handling(),
    }


def explain_record(
    container: ContainerObject, snap: Snapshot, pred: Prediction, now: str
) -> dict[str, Any]:
    p1 = snap.pid1
    return {
        "schema": SCHEMA,
        "type": "explain",
        "time": now,
        "container": container,
        "stop_signal": signals.name(snap.stop_signal),
        "expect": pred.expect,
        "graceful": pred.graceful,
        "summary": pred.summary,
        "confidence": pred.confidence,
        "confidence_reason": pred.confidence_reason,
        "hint": pred.hint,
        "processes": [_proc_row(p1, 0)] + [_proc_row(p, d) for d, p in descendants(p1)],
    }


def render_text(rec: dict[str, Any]) -> str:
    c = rec["container"]
    name = printable(c.get("name") or c["id"][:12])
    image = f", {printable(c['image'])}" if c.get("image") else ""
    lines = [f"container {name} ({c.get('runtime')}{image}), stop signal {rec['stop_signal']}"]
    for p in rec["processes"]:
        ns = f" ns:{p['ns_pid']}" if p.get("ns_pid") not in (None, p["pid"]) else ""
        head = "PID 1 " if p["depth"] == 0 else ""
        cmd = f" `{printable(p['cmdline'])}`" if p.get("cmdline") else ""
        who = f"{printable(p['comm'])} (pid {p['pid']}{ns})"
        lines.append(f"{'  ' * (p['depth'] + 1)}{head}{who}{cmd}: {p['handles']}")
    verdict = "graceful" if rec["graceful"] else f"NOT graceful ({rec['expect']})"
    if rec["confidence"] == "low":
        verdict = f"UNSURE, {verdict}"
    lines.append(f"  prediction: {verdict}: {printable(rec['summary'])}")
    lines.append(f"  confidence: {rec['confidence']} ({printable(rec['confidence_reason'])})")
    lines.append(f"  fix: {printable(rec['hint'])}")
    return "\n".join(lines)


def _targets(containers: tuple[str, ...], pods: tuple[str, ...]) -> list[RuntimeContainer]:
    from sigtrace.containers.select import check_container, parse_pod
    from sigtrace.enrich import default_cache

    for query in containers:
        check_container(query)
    for query in pods:
        parse_pod(query)
    cache = default_cache()
    found = []
    for query in containers:
        found += cache.resolve(query)
    for query in pods:
        ns, name = parse_pod(query)
        members = [c for c in cache.pod_members(ns, name) if not c.sandbox]
        if not members:
            where = f" in namespace {ns}" if ns else ""
            raise ContainerNotFound(f"no pod {name!r}{where}")
        found += members
    return found


def _worst(a: int, b: int) -> int:
    """Several containers: one that will not stop gracefully decides, then an unsure one."""
    for code in (EXIT_NOT_GRACEFUL, EXIT_UNSURE):
        if code in (a, b):
            return code
    return 0


def run_explain(
    containers: tuple[str, ...], pods: tuple[str, ...], fmt: str, proc_root: str, out: TextIO
) -> int:
    """Writes one `explain` record per container; returns the exit code."""
    from sigtrace.commands.options import check_roots
    from sigtrace.enrich import container_object
    from sigtrace.stories import stop_signal_number

    if not containers and not pods:
        raise UsageError("explain needs --container or --pod")
    check_roots(proc_root)
    from sigtrace.output.jsonl import JsonlWriter

    procfs = Procfs(proc_root)
    clock = Clock()
    code = 0
    for rc in _targets(containers, pods):
        if rc.pid <= 0:
            raise ContainerNotFound(f"container {printable(rc.name or rc.id[:12])} is not running")
        signo = stop_signal_number(rc.stop_signal) or signals.SIGTERM
        snap = Snapshot(signo, read_proc(procfs, rc.pid, signo))
        pred = predict(snap)
        rec = explain_record(container_object(rc), snap, pred, clock.now_iso())
        if fmt == "jsonl":
            JsonlWriter(out).write(rec)
        else:
            out.write(render_text(rec) + "\n")
        code = _worst(code, pred.exit_code)
    out.flush()
    return code


@click.command(
    epilog="""\b
Examples:
  sudo sigtrace explain --container web          # before `docker stop web`
  sudo sigtrace explain --pod shop/api-7c9f --format jsonl
  sigtrace explain -c web || echo "web will not stop gracefully"   # exit 10 (12: unsure)
"""
)
@click.option("--container", "-c", "containers", multiple=True, metavar="NAME|ID")
@click.option("--pod", "pods", multiple=True, metavar="[NAMESPACE/]NAME")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True
)
@click.option("--proc-root", envvar="SIGTRACE_PROC_ROOT", default="/proc", show_default=True)
def explain(containers: tuple[str, ...], pods: tuple[str, ...], fmt: str, proc_root: str) -> None:
    """Predict what stopping a container will do (nothing is sent): exit 0 if graceful, 10 if
    not, 12 if it cannot tell with confidence (say, whether a shell's trap passes it on).

    Reads PID 1's command line, which processes handle, ignore or block the stop signal (the
    image's STOPSIGNAL, else SIGTERM), and the process tree below PID 1.
    """
    code = run_explain(containers, pods, fmt, proc_root, sys.stdout)
    if code:
        sys.exit(code)  # not an error: the answer, for CI to gate on
