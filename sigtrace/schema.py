"""The JSON Schema (draft 2020-12) of `sigtrace.v1`: one branch per record `type`.

This module is the schema's source; `sigtrace schema` prints it and tests/unit/test_schema.py
checks it against README.md's "Output schema" tables both ways (a field in one and not the
other fails), and validates every record the tests see against it.

Two forms of the same source:
- published (`sigtrace schema`): what a consumer validates with. README's versioning rule says
  adding a field or an enumerated value keeps `v1`, so unknown properties are allowed and
  enumerated fields accept any string (their known values listed as `examples`).
- strict (`sigtrace schema --strict`, and every test): exactly what this version writes, no
  unknown property, no unknown value. A new field that is written but not added here fails
  the tests.

Adding a field is one line in the record's table below. A field added to v1 after its first
release is `opt(...)`: records written before it (tests/data/, a log store's history) lack it.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from sigtrace import SCHEMA, kubegrace, story_tree, verdicts, wire

Schema = dict[str, Any]
ID = "urn:sigtrace:schema:sigtrace.v1"


class _Opt:
    """A property that may be absent (by default every listed property is required)."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec


def opt(spec: Any) -> _Opt:
    return _Opt(spec)


# --- building blocks (specs are plain JSON Schema, or markers resolved by _resolve)

INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
TIME = {
    "type": "string",
    "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$",
    "description": "RFC 3339, UTC, up to nanoseconds",
}
SIGNAL_NAME = {"type": "string", "pattern": r"^SIG"}


def null(spec: Any) -> Any:
    return ("null", spec)


def enum(*values: str) -> tuple[str, tuple[str, ...]]:
    return ("enum", values)


def obj(**fields: Any) -> dict[str, Any]:
    return {"$fields": fields}


def array(item: Any) -> dict[str, Any]:
    return {"type": "array", "items": item}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def signal_entry(**more: Any) -> dict[str, Any]:
    """A signal as a verdict lists it (`forwarded`, `hops`)."""
    return obj(
        time=TIME,
        signal=SIGNAL_NAME,
        sender=ref("short_process"),
        target=ref("short_process"),
        outcome=STR,
        **more,
    )


VERDICTS = enum(*verdicts.VERDICTS)  # the one table: sigtrace/verdicts.py
BACKENDS = enum("core", "bcc", "tracefs", "ptrace")
# failed: the errno name (EPERM, ESRCH, EAGAIN, ...), open-ended, so matched by pattern
REASONS = (
    "pid1_no_handler",
    "sig_ign",
    "default_ignore",
    "kernel_thread",
    "blocked",
    "already_pending",
    "info_lost",
)
ERRNO = {"type": "string", "pattern": r"^E[A-Z0-9]+$"}

DEFS: dict[str, Any] = {
    "pod": obj(name=STR, namespace=STR, uid=null(STR), container=null(STR)),
    # replay: `id` is `pidns:<inode>` and `runtime` null (a raw recording names no runtime)
    "container": obj(
        id=STR, name=null(STR), runtime=null(STR), image=null(STR), pod=opt(ref("pod"))
    ),
    # pid..uid are null only where a backend cannot know them (README, "Backends")
    "process": obj(
        pid=null(INT),
        tid=null(INT),
        ns_pid=null(INT),
        comm=null(STR),
        pid1=opt(null(BOOL)),
        uid=opt(null(INT)),
        cmdline=opt(null(STR)),
        container=opt(null(ref("container"))),
        pidfd=opt(INT),  # a failed pidfd_send_signal's target: the pidfd, not a pid
    ),
    "short_process": obj(pid=null(INT), ns_pid=null(INT), comm=null(STR)),
}

COMMON: dict[str, Any] = {
    "schema": {"const": SCHEMA},
    "time": TIME,
    "node": opt(STR),  # `sigtrace daemon`: the node name, on every record
}

RECORDS: dict[str, dict[str, Any]] = {
    "signal": {
        "signal": SIGNAL_NAME,
        "signo": INT,
        "code": STR,
        "sender": ref("process"),
        "target": ref("process"),
        "outcome": enum("delivered", "ignored", "pending", "merged", "failed"),
        "reason": ("reason", None),
        "scope": enum("process", "thread", "pgrp", "all", "pidns_teardown", "kernel"),
        "fanout": null(obj(id=null(INT), count=null(INT), requested=INT)),
        "syscall": null(enum(*wire.SYSCALL_NAMES.values())),
        "result": null(
            enum("delivered", "ignored", "already_pending", "overflow_fail", "lose_info")
        ),
        "target_state": null(
            obj(
                handler=null(enum("default", "ignore", "handler")),
                blocked=null(BOOL),
                unkillable=null(BOOL),
                ptraced=null(BOOL),
                waiting=opt(null(BOOL)),  # added in v1: older records lack it
                caught=opt(null(array(SIGNAL_NAME))),  # SIGKILL only; added in v1
            )
        ),
        "si_pid": null(INT),
        "derived": opt(array(STR)),
    },
    "deliver": {
        "signal": SIGNAL_NAME,
        "signo": INT,
        "code": null(STR),
        "target": ref("process"),
        "action": enum(
            "handler",
            "default_terminate",
            "default_core",
            "default_stop",
            "default_ignore",
            "ignore",
            "dropped_by_pid1",
        ),
        "reported_as": null(SIGNAL_NAME),
        "derived": opt(array(STR)),
    },
    "exit": {
        "process": ref("process"),
        "exit_code": null(INT),
        "signal": null(SIGNAL_NAME),
        "core_dumped": BOOL,
        "oom": null(BOOL),  # null: ptrace could not read the cgroup's OOM counter
        "caught": opt(null(array(SIGNAL_NAME))),  # added in v1
        "derived": opt(array(STR)),
    },
    "oom": {"victim": ref("process"), "trigger": ref("process")},
    "lost": {
        "count": {"type": "integer", "minimum": 1},
        "reason": opt(enum("buffer", "output")),  # added in v1: older records lack it
    },
    "start": {
        "version": STR,
        "backend": BACKENDS,
        "why": STR,
        "filters": obj(
            signals=array(SIGNAL_NAME),
            pids=array(INT),
            cgroup_ids=array(INT),
            containers=array(STR),
            pods=array(STR),
        ),
        "cannot_see": array(STR),
        "kernel": STR,
        "host": STR,
    },
    "stop": {
        "records": {"type": "object", "additionalProperties": INT},
        "lost": INT,
    },
    "verdict": {
        "verdict": VERDICTS,
        "complete": BOOL,
        "container": null(ref("container")),
        "pid1": obj(pid=null(INT), comm=null(STR), cmdline=null(STR)),
        "stop_signal": SIGNAL_NAME,
        "stop_at": null(TIME),
        "kill_at": null(TIME),
        "grace_s": null(NUM),
        "wasted_s": null(NUM),
        "exit_code": null(INT),
        # the hop-by-hop story (added in v1: older records lack them)
        "culprit": opt(
            null(obj(pid=null(INT), ns_pid=null(INT), comm=null(STR), cmdline=null(STR), pid1=BOOL))
        ),
        "killed_by": opt(null(enum("runtime", "teardown"))),
        "hops": opt(
            array(
                signal_entry(
                    reason=null(STR),
                    scope=STR,
                    action=null(STR),
                    result=enum(*story_tree.HOP_RESULTS),
                )
            )
        ),
        "processes": opt(
            array(
                obj(
                    pid=null(INT),
                    ns_pid=null(INT),
                    comm=null(STR),
                    cmdline=null(STR),
                    state=enum(*story_tree.STATES),
                    ending=enum(*story_tree.ENDINGS),
                    stop_handler=null(BOOL),
                    signal=null(SIGNAL_NAME),
                    **{"from": null(ref("short_process"))},
                )
            )
        ),
        # Kubernetes pods whose runtime shows the kubelet's annotations (sigtrace/kubegrace.py)
        "grace": opt(
            obj(
                period_s=INT,
                prestop_s=null(NUM),
                stop_window_s=null(NUM),
                source=enum(kubegrace.SOURCE_BUNDLE),
            )
        ),
        "killed_by_teardown": array(obj(pid=INT, comm=null(STR))),
        "forwarded": array(signal_entry()),
        "exits": array(
            obj(
                pid=INT,
                comm=null(STR),
                exit_code=null(INT),
                signal=null(SIGNAL_NAME),
                ended_by=enum("runtime_kill", "teardown", "oom", "signal", "exit"),
            )
        ),
        "evidence": array(obj(time=TIME, type=STR, what=STR)),
        "hint": null(STR),
        "caveat": null(STR),
    },
    "explain": {
        "container": ref("container"),
        "stop_signal": SIGNAL_NAME,
        "expect": VERDICTS,
        "graceful": BOOL,
        "summary": STR,
        "confidence": enum("high", "medium", "low"),
        "confidence_reason": STR,
        "hint": STR,
        "processes": array(
            obj(
                pid=INT,
                ns_pid=null(INT),
                comm=STR,
                cmdline=null(STR),
                depth=INT,
                handles=enum("handler", "ignored", "waits", "blocked", "default"),
            )
        ),
    },
    "doctor": {
        "kernel": STR,
        "backends": {
            "type": "object",
            "additionalProperties": array(obj(check=STR, ok=BOOL, detail=STR)),
        },
        "tracepoints": {"type": "object", "additionalProperties": BOOL},
        "runtimes": array(obj(runtime=STR, state=enum("answered", "failed", "absent"), detail=STR)),
        "auto": obj(backend=null(BACKENDS), why=STR, exit_code=opt(INT)),
    },
}


def _resolve(spec: Any, strict: bool) -> Any:
    """Markers (null(), enum(), obj(), the reason) → JSON Schema."""
    if isinstance(spec, tuple):
        kind, value = spec
        if kind == "null":
            return {"anyOf": [_resolve(value, strict), {"type": "null"}]}
        if kind == "enum":
            if strict:
                return {"enum": list(value)}
            return {"type": "string", "examples": list(value)}
        if kind == "reason":
            known = {"enum": list(REASONS)} if strict else {"type": "string"}
            return {"anyOf": [known, ERRNO, {"type": "null"}]}
        raise ValueError(f"unknown marker {kind!r}")
    if isinstance(spec, dict):
        if "$fields" in spec:
            return _object(spec["$fields"], strict)
        return {k: _resolve(v, strict) for k, v in spec.items()}
    if isinstance(spec, list):
        return [_resolve(v, strict) for v in spec]
    return spec


def _object(fields: dict[str, Any], strict: bool) -> Schema:
    props, required = {}, []
    for name, spec in fields.items():
        if isinstance(spec, _Opt):
            spec = spec.spec
        else:
            required.append(name)
        props[name] = _resolve(spec, strict)
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": not strict,
    }


STRICT_NOTE = "Strict: exactly the fields and values this version writes."
OPEN_NOTE = "Later v1 versions may add fields and enumerated values: both are accepted."
DATA_FILE = "data/sigtrace.v1.schema.json"  # the published form, shipped as package data


def build(strict: bool = False) -> Schema:
    note = STRICT_NOTE if strict else OPEN_NOTE
    branches = [{"if": _type_is(kind), "then": _branch(kind, strict)} for kind in RECORDS]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": ID,
        "title": SCHEMA,
        "description": f"One sigtrace record, a JSON object per line (README.md). {note}",
        "type": "object",
        "required": ["schema", "type", "time"],
        "properties": {"type": {"enum": list(RECORDS)} if strict else STR},
        "allOf": branches,
        "$defs": _defs(strict),
    }


def _branch(kind: str, strict: bool) -> Schema:
    return _object(fields(kind), strict)


def record_schema(kind: str, strict: bool = False) -> Schema:
    """One record type's branch alone, standalone (validates ~10x faster than the whole)."""
    return {**_branch(kind, strict), "$defs": _defs(strict)}


def _defs(strict: bool) -> Schema:
    return {name: _resolve(spec, strict) for name, spec in DEFS.items()}


def _type_is(kind: str) -> Schema:
    return {"properties": {"type": {"const": kind}}, "required": ["type"]}


def fields(kind: str) -> dict[str, Any]:
    """A record type's top-level properties (common ones included), for tests and tools."""
    return {**COMMON, "type": {"const": kind}, **RECORDS[kind]}


def render(strict: bool = False) -> str:
    return json.dumps(build(strict), indent=2) + "\n"


def published() -> str:
    """The schema file shipped in the package (tests check it is `render()`)."""
    return (resources.files("sigtrace") / DATA_FILE).read_text()
