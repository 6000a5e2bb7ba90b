"""Fixtures for tests that load the real BPF object and trace the real kernel.

Skips only when not root. As root, a tracer that cannot load is a failure, not a skip: CI
runs these as root, so a silent skip would hide a broken build or kernel.

`tracer(signals=..., pids=...)` starts `python -m sigtrace --format jsonl` and returns once
its `start` record is out (tracing is live); `handle.stop()` ends it with SIGTERM and returns
the parsed records. `agents(...)` starts workloads (tests/root/helpers.py: Agent), so a test
knows every pid it asserts on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.root.helpers import AGENT, Agent, Agents, StartTracer
from tests.tracing import Tracer

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.root)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="needs root (BPF, pid namespaces)"))


@pytest.fixture
def tracer(tmp_path: Path) -> Iterator[StartTracer]:
    """Starts tracers; each is live (start record out) when returned. Killed at teardown."""
    started: list[Tracer] = []

    def start(
        signals: Iterable[str] = ("TERM",),
        pids: Iterable[int] = (),
        extra: Iterable[str] = (),
        wait: bool = True,
    ) -> Tracer:
        args = ["--signal", ",".join(signals)]
        for p in pids:
            args += ["--pid", str(p)]
        args += list(extra)
        n = len(started)
        t = Tracer(args, tmp_path / f"trace{n}.jsonl", tmp_path / f"trace{n}.err")
        started.append(t)
        if wait:
            t.wait_started()
        return t

    yield start
    for t in started:
        t.close()


@pytest.fixture(scope="session")
def agent_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workload as a file: a short cmdline in the records, and a readable traceback."""
    path = tmp_path_factory.mktemp("workload") / "agent.py"
    path.write_text(AGENT)
    return path


@pytest.fixture
def agents(agent_script: Path) -> Iterator[Agents]:
    """Starts workloads (see Agent); each is killed at teardown."""
    made: list[Agent] = []

    def make(*specs: str, **kw: Any) -> Agent:
        a = Agent(agent_script, *specs, **kw)
        made.append(a)
        return a

    yield make
    for a in made:
        a.close()
