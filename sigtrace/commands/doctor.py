"""`sigtrace doctor`: every probe of every backend, and the choice `auto` would make.

Exits as `sigtrace` itself would: 0 when a backend can run, else the exit code of the reason
the first one cannot (3 privileges, 4 a kernel feature, 5 a library), after the report."""

from __future__ import annotations

import sys
from typing import TextIO, TypedDict

import click

from sigtrace import SCHEMA, features
from sigtrace.backends import registry, select
from sigtrace.config import TraceConfig
from sigtrace.errors import SigtraceError
from sigtrace.output.jsonl import JsonlWriter
from sigtrace.timefmt import Clock

TRACEPOINTS = (
    ("signal", "signal_generate"),
    ("signal", "signal_deliver"),
    ("syscalls", "sys_enter_kill"),
    ("sched", "sched_process_exit"),
    ("oom", "mark_victim"),
)


class Check(TypedDict):
    check: str
    ok: bool
    detail: str


class RuntimeRow(TypedDict):
    runtime: str
    state: str
    detail: str


class AutoChoice(TypedDict):
    backend: str | None  # None: no backend can run; exit_code says why
    why: str
    exit_code: int


class DoctorRecord(TypedDict):
    schema: str
    type: str
    time: str
    kernel: str
    backends: dict[str, list[Check]]
    tracepoints: dict[str, bool]
    runtimes: list[RuntimeRow]
    auto: AutoChoice


def collect(config: TraceConfig) -> DoctorRecord:
    now = Clock().now_iso()
    kernel = features.kernel_release()
    backends = {
        name: [Check(check=what, ok=ok, detail=detail) for what, ok, detail in cls.probe(config)]
        for name, cls in registry().items()
    }
    tracepoints = {
        f"{cat}:{name}": features.tracepoint(cat, name, config.sys_root).ok
        for cat, name in TRACEPOINTS
    }
    runtimes = _runtimes()
    try:
        cls, why = select("auto", config)
        auto = AutoChoice(backend=cls.name, why=why, exit_code=0)
    except SigtraceError as exc:
        auto = AutoChoice(backend=None, why=exc.message, exit_code=exc.code)
    return DoctorRecord(
        schema=SCHEMA,
        type="doctor",
        time=now,
        kernel=kernel,
        backends=backends,
        tracepoints=tracepoints,
        runtimes=runtimes,
        auto=auto,
    )


def _runtimes() -> list[RuntimeRow]:
    """Which container runtimes are here, and whether they answer (names come from them)."""
    from sigtrace.enrich import default_cache

    return [
        RuntimeRow(runtime=r.runtime, state=r.state, detail=r.detail.removeprefix(f"{r.runtime}: "))
        for r in default_cache().list_all().runtimes
    ]


def report(info: DoctorRecord, fmt: str, stream: TextIO) -> None:
    if fmt == "jsonl":
        JsonlWriter(stream).write(info)
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
    stream.write("container runtimes:\n")
    for r in info["runtimes"]:
        mark = {"answered": "x", "failed": "!"}.get(r["state"], " ")
        stream.write(f"  [{mark}] {r['runtime']}: {r['state']}: {r['detail']}\n")
    auto = info["auto"]
    stream.write(f"auto: {auto['backend'] or 'none'}: {auto['why']}\n")


@click.command(epilog="\b\nExamples:\n  sudo sigtrace doctor\n  sigtrace doctor --format jsonl")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True
)
@click.option("--proc-root", envvar="SIGTRACE_PROC_ROOT", default="/proc", show_default=True)
@click.option("--sys-root", envvar="SIGTRACE_SYS_ROOT", default="/sys", show_default=True)
def doctor(fmt: str, proc_root: str, sys_root: str) -> None:
    """Kernel features, privileges, and which backend would run and why."""
    info = collect(TraceConfig(proc_root=proc_root, sys_root=sys_root))
    report(info, fmt, sys.stdout)
    code = info["auto"]["exit_code"]
    if code:
        sys.stdout.flush()
        error = SigtraceError(info["auto"]["why"])
        error.code = code
        raise error
