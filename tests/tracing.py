"""The tracer under test as a subprocess, and helpers to select its records.

Shared by the root, Docker and containerd tests: `Tracer` runs `python -m sigtrace --format
jsonl ...` from the checkout (not the copy installed in .venv), waits for its `start` record
(tracing live), and on `stop()` asserts a clean end: exit 0, whole JSON lines, one `stop`
record, last.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sigtrace import schema

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
LINE_TIMEOUT_S = 10.0

Record = dict[str, Any]
Samples = dict[str, list[tuple[dict[str, str], float]]]


def sigtrace_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "sigtrace", *args]


def run_sigtrace(
    *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`python -m sigtrace ARGS` (after `prefix`, e.g. setpriv) to its end, output captured."""
    return subprocess.run(
        [*prefix, *sigtrace_cmd(*args)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def parse_lines(text: str) -> list[Record]:
    """Every line must be one whole JSON object, valid under the strict sigtrace.v1 schema."""
    assert text == "" or text.endswith("\n"), f"output ends mid-line: {text[-200:]!r}"
    out = []
    for line in text.splitlines():
        rec = json.loads(line)
        assert isinstance(rec, dict), line
        out.append(rec)
    check_schema(out)
    return out


_VALIDATORS: dict[str, jsonschema.Draft202012Validator] = {}


def _validator(kind: str) -> jsonschema.Draft202012Validator:
    v = _VALIDATORS.get(kind)
    if v is None:
        v = _VALIDATORS[kind] = jsonschema.Draft202012Validator(schema.record_schema(kind, True))
    return v


def schema_errors(rec: Record) -> list[str]:
    """Why `rec` breaks the strict schema (empty when it does not)."""
    kind = rec.get("type")
    if kind not in schema.RECORDS:
        return [f"unknown record type {kind!r}"]
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<record>'}: {e.message}"
        for e in _validator(str(kind)).iter_errors(rec)
    ]


def check_schema(records: list[Record]) -> None:
    """Fails the test on the first record the strict sigtrace.v1 schema refuses. A flood's
    records differ only in `time` (checked by every validation): each shape is validated once."""
    seen: set[str] = set()
    for rec in records:
        key = json.dumps({k: v for k, v in rec.items() if k != "time"}, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        errors = schema_errors(rec)
        assert not errors, f"record breaks sigtrace.v1: {errors[:5]}\n{json.dumps(rec)[:2000]}"


class Tracer:
    """A running `sigtrace --format jsonl` (or `sigtrace daemon`: command=["daemon"]),
    writing to a file."""

    def __init__(
        self,
        args: list[str],
        out_path: Path,
        err_path: Path,
        env: dict[str, str] | None = None,
        command: tuple[str, ...] = ("--format", "jsonl"),
    ) -> None:
        self.args = args
        self.out_path = out_path
        self.err_path = err_path
        self._out = open(out_path, "wb")  # noqa: SIM115 - closed in close()
        self._err = open(err_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            sigtrace_cmd(*command, *args),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            cwd=REPO,
            env={**os.environ, **(env or {})},
        )
        self.records: list[Record] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_started(self, timeout: float = START_TIMEOUT_S) -> Record:
        deadline = time.monotonic() + timeout
        while True:
            text = self.out_path.read_text(errors="replace")
            first = text.split("\n", 1)
            if len(first) == 2:
                rec = json.loads(first[0])
                assert rec["type"] == "start", f"first record is not start: {first[0]}"
                return rec
            if self.proc.poll() is not None:
                pytest.fail(
                    f"sigtrace exited {self.proc.returncode} before tracing started "
                    f"(BPF loading failed?): {self.stderr().strip()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"sigtrace wrote no start record within {timeout} s: {self.stderr()}")
            time.sleep(0.02)

    def wait_exit(self, timeout: float = STOP_TIMEOUT_S) -> list[Record]:
        """Waits for the tracer to end by itself; asserts a clean end; returns the records."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            tail = self.out_path.read_text(errors="replace").splitlines()[-2:]
            pytest.fail(f"sigtrace did not exit within {timeout} s; its last records: {tail}")
        self.close()
        text = self.out_path.read_text()
        assert code == 0, f"sigtrace exited {code}: {self.stderr()}"
        assert "Traceback" not in self.stderr(), self.stderr()
        records = parse_lines(text)
        assert records and records[-1]["type"] == "stop", f"last record is not stop: {text[-300:]}"
        assert sum(r["type"] == "stop" for r in records) == 1
        self.records = records
        return records

    def stop(self, sig: int = signal.SIGTERM) -> list[Record]:
        """Ends tracing with `sig` (SIGTERM by default) and returns the parsed records."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
        self._err.close()


# --- selecting records ----------------------------------------------------------------------


def _match(rec: Record, want: dict[str, Any]) -> bool:
    return all(v is None or rec.get(k) == v for k, v in want.items())


def signals(
    records: list[Record],
    target_pid: int | None = None,
    sender_pid: int | None = None,
    signo: int | None = None,
) -> list[Record]:
    return [
        r
        for r in records
        if r["type"] == "signal"
        and _match(r, {"signo": signo})
        and (target_pid is None or r["target"]["pid"] == target_pid)
        and (sender_pid is None or r["sender"]["pid"] == sender_pid)
    ]


def delivers(
    records: list[Record], pid: int | None = None, signal: str | None = None
) -> list[Record]:
    return [
        r
        for r in records
        if r["type"] == "deliver"
        and (pid is None or r["target"]["pid"] == pid)
        and (signal is None or r["signal"] == signal)
    ]


def exits(records: list[Record], pid: int | None = None) -> list[Record]:
    return [
        r for r in records if r["type"] == "exit" and (pid is None or r["process"]["pid"] == pid)
    ]


def one(items: list[Record], what: str = "record") -> Record:
    assert len(items) == 1, f"expected one {what}, got {len(items)}: {items}"
    return items[0]


def wait_for(cond: Callable[[], bool], timeout: float = LINE_TIMEOUT_S, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or cond}")
        time.sleep(0.02)


# --- the daemon's metrics ---------------------------------------------------------------------


def scrape_metrics(daemon_log: str) -> Samples:
    """`sigtrace daemon --metrics`: its /metrics (URL from its log) as {name: [(labels, value)]}."""
    m = re.search(r"metrics on (http://\S+)/metrics", daemon_log)
    assert m, daemon_log
    with urllib.request.urlopen(m.group(1) + "/metrics", timeout=5) as r:
        text = r.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def by_labels(samples: list[tuple[dict[str, str], float]], *keys: str) -> Counter[tuple[str, ...]]:
    """Sample values summed by the given labels; zeros dropped."""
    out: Counter[tuple[str, ...]] = Counter()
    for labels, value in samples:
        out[tuple(labels[k] for k in keys)] += int(value)
    return +out  # drop zeros
