"""`sigtrace doctor`: every probe of every backend, and the choice `auto` would make."""

from __future__ import annotations

import json
from typing import TextIO

from sigtrace import SCHEMA, features
from sigtrace.backends import registry, select
from sigtrace.config import TraceConfig
from sigtrace.errors import SigtraceError


def collect(config: TraceConfig | None = None) -> dict:
    config = config or TraceConfig()
    out: dict = {
        "schema": SCHEMA,
        "type": "doctor",
        "kernel": features.kernel_release(),
        "backends": {},
    }
    for name, cls in registry().items():
        out["backends"][name] = [
            {"check": what, "ok": ok, "detail": detail} for what, ok, detail in cls.probe(config)
        ]
    tp = {}
    for cat, name in (
        ("signal", "signal_generate"),
        ("signal", "signal_deliver"),
        ("syscalls", "sys_enter_kill"),
        ("sched", "sched_process_exit"),
        ("oom", "mark_victim"),
    ):
        tp[f"{cat}:{name}"] = features.tracepoint(cat, name, config.sys_root).ok
    out["tracepoints"] = tp
    try:
        cls, why = select("auto", config)
        out["auto"] = {"backend": cls.name, "why": why}
    except SigtraceError as exc:
        out["auto"] = {"backend": None, "why": exc.message}
    return out


def report(fmt: str, stream: TextIO, config: TraceConfig | None = None) -> None:
    info = collect(config)
    if fmt == "jsonl":
        stream.write(json.dumps(info) + "\n")
        return
    stream.write(f"kernel {info['kernel']}\n")
    for name, checks in info["backends"].items():
        state = "ok" if all(c["ok"] for c in checks) else "unavailable"
        stream.write(f"backend {name}: {state}\n")
        for c in checks:
            stream.write(f"  [{'x' if c['ok'] else ' '}] {c['check']}: {c['detail']}\n")
    stream.write("tracepoints (tracefs):\n")
    for tp, ok in info["tracepoints"].items():
        stream.write(f"  [{'x' if ok else ' '}] {tp}\n")
    auto = info["auto"]
    stream.write(f"auto: {auto['backend'] or 'none'}: {auto['why']}\n")
