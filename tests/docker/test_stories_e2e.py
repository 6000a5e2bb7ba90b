"""Termination stories end to end: real containers, real `docker stop` (or `docker kill`) with
`sigtrace --container NAME --backend B` running beside it, once per backend, and `sigtrace
explain` asked before the stop (once: it traces nothing, so no backend is involved).

Every backend tells the same story where it can see it. Where one cannot, the test asserts
what its records say instead (the `start` record's `cannot_see` names each limit):

- ptrace never sees SIGKILL as a stop: no SIGKILL records at all (the runtime's, the namespace
  teardown's). PID 1's exit by SIGKILL stands for the runtime's kill, so `kill_at` and `grace_s`
  are null, `wasted_s` runs to PID 1's exit, and the verdict says so in its `caveat`. The stop
  signal's sender (`runc kill`, outside the container's pid namespace) is unknown: null. tini
  takes SIGTERM with sigtimedwait, which makes no signal-delivery-stop: no stop, no story.
- bcc and tracefs read a signal's target from /proc when its record is handled: a process the
  teardown killed may be gone by then, and its records have no container and no namespace pid,
  so it is missing from `killed_by_teardown` (never named wrongly).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.tracing import check_schema, sigtrace_cmd

if TYPE_CHECKING:  # types only: two conftest.py modules share the name at run time
    from tests.docker.conftest import Container, ContainerFactory

pytestmark = pytest.mark.docker

Record = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
GRACE_S = 2
VERDICT_TIMEOUT_S = 8.0  # the settle window (1.5 s) and a few ticks after the exit
NO_SIGKILL = "SIGKILL is never seen as a stop"  # ptrace's cannot_see
UNSEEN_KILL = "no SIGKILL was seen"  # the verdict's caveat when PID 1's exit stands for it
UNKNOWN_HANDLER = "handler is not known"  # ... when a teardown victim's handler is unknown


def sees_caught(recs: list[Record]) -> bool:
    """Whether the records say which signals each SIGKILLed process handled (`caught`, on its
    SIGKILL record or its exit): without it, a teardown victim's handler is unknown and a stop
    is never called graceful."""
    known = {
        r["target"]["pid"]
        for r in recs
        if r["type"] == "signal"
        and r["signal"] == "SIGKILL"
        and isinstance(r["target_state"].get("caught"), list)
    }
    known |= {
        r["process"]["pid"]
        for r in recs
        if r["type"] == "exit" and isinstance(r.get("caught"), list)
    }
    killed = {r["process"]["pid"] for r in recs if r["type"] == "exit" and r["signal"] == "SIGKILL"}
    return killed <= known


def graceful_or_unsure(v: Record, recs: list[Record]) -> None:
    """graceful where the handlers are known; else the teardown's sleep (no handler, but that
    is not seen) makes it not_forwarded with the caveat saying why."""
    if sees_caught(recs) or not v["killed_by_teardown"]:
        assert v["verdict"] == "graceful" and v["caveat"] is None
        assert v["hint"].startswith("Nothing to fix.")
    else:
        assert (v["verdict"], v["killed_by"]) == ("not_forwarded", "teardown")
        assert UNKNOWN_HANDLER in v["caveat"]


def records(path: Path) -> list[Record]:
    text = path.read_text()
    recs = [json.loads(line) for line in text.splitlines() if line.endswith("}")]
    check_schema(recs)
    return recs


def wait_for(
    path: Path, cond: Callable[[list[Record]], bool], timeout: float, what: str
) -> list[Record]:
    deadline = time.monotonic() + timeout
    while True:
        recs = records(path)
        if cond(recs):
            return recs
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout}s: {recs}")
        time.sleep(0.05)


def has(kind: str) -> Callable[[list[Record]], bool]:
    return lambda recs: any(r["type"] == kind for r in recs)


def pid1_exits(recs: list[Record], c: Container) -> list[Record]:
    return [r for r in recs if r["type"] == "exit" and r["process"]["pid"] == c.pid]


def explain(name: str) -> tuple[int, Record]:
    r = subprocess.run(
        sigtrace_cmd("explain", "--container", name, "--format", "jsonl"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode in (0, 10, 12), r.stderr
    rec = json.loads(r.stdout)
    check_schema([rec])
    return r.returncode, rec


def trace_stop(
    c: Container,
    tmp_path: Path,
    backend: str,
    *,
    kill: bool = False,
    before: Callable[[list[Record]], bool] | None = None,
    verdict: bool = True,
) -> list[Record]:
    """`docker stop -t 2` (`docker kill` with `kill`) under `sigtrace --container --backend`,
    once `before` holds for the records; the records, the verdict live (waited for before
    tracing stops: not a flush; with `verdict=False`, PID 1's exit is waited for instead)."""
    out = tmp_path / "trace.jsonl"
    cmd = sigtrace_cmd("--container", c.name, "--backend", backend, "--format", "jsonl")
    if backend in ("bcc", "tracefs"):  # no registers read: a kill(-pgid)'s scope needs the hook
        cmd.append("--syscalls")
    with open(out, "w") as f, open(tmp_path / "trace.err", "w") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=err)
    try:
        wait_for(out, has("start"), 15.0, "start record")
        if before is not None:
            wait_for(out, before, 10.0, "records wanted before the stop")
        action = ["kill"] if kill else ["stop", "-t", str(GRACE_S)]
        subprocess.run(["docker", *action, c.id], check=True, timeout=60)
        if verdict:
            wait_for(out, has("verdict"), VERDICT_TIMEOUT_S, "verdict")
        else:
            wait_for(out, lambda recs: bool(pid1_exits(recs, c)), 5.0, "PID 1's exit")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    recs = records(out)
    assert recs[0]["type"] == "start" and recs[0]["backend"] == backend
    assert recs[-1]["type"] == "stop"
    return recs


def pid1_signals(recs: list[Record], sig: str) -> list[Record]:
    return [r for r in recs if r["type"] == "signal" and r["signal"] == sig and r["target"]["pid1"]]


def the_verdict(recs: list[Record], c: Container) -> Record:
    verdicts = [r for r in recs if r["type"] == "verdict"]
    assert len(verdicts) == 1, verdicts
    v = verdicts[0]
    assert v["container"]["id"] == c.id and v["complete"] is True
    (exit1,) = pid1_exits(recs, c)
    assert exit1["process"]["pid1"] is True and v["exit_code"] == exit1["exit_code"]
    return v


def cannot_see(recs: list[Record], text: str) -> bool:
    return any(text in line for line in recs[0]["cannot_see"])


def the_stop(recs: list[Record], backend: str) -> Record:
    """The one stop signal to PID 1, from the runtime outside the container."""
    (term,) = pid1_signals(recs, "SIGTERM")
    assert term["sender"]["container"] is None
    if backend == "ptrace":
        # `runc kill` is outside the tracee's pid namespace (si_pid 0): not known, not guessed.
        assert term["sender"]["pid"] is None and term["si_pid"] == 0
        assert cannot_see(recs, "no sender outside the tracee's pid namespace")
        # the kernel's decision, rebuilt: a traced task's signal is never ignored when sent
        assert term["target_state"]["ptraced"] is True and "outcome" in term["derived"]
    return term


def the_kill(recs: list[Record], v: Record, backend: str) -> Record | None:
    """The runtime's SIGKILL to PID 1 and the verdict's kill_at; None under ptrace, which sees
    no SIGKILL: the verdict then rests on PID 1's exit code and says so."""
    if backend == "ptrace":
        assert [r for r in recs if r.get("signo") == signal.SIGKILL] == []
        assert cannot_see(recs, NO_SIGKILL)
        assert v["kill_at"] is None and v["grace_s"] is None
        assert UNSEEN_KILL in v["caveat"]
        return None
    kill = pid1_signals(recs, "SIGKILL")[0]
    assert kill["sender"]["container"] is None  # the runtime, from outside
    assert kill["outcome"] == "delivered" and v["kill_at"] == kill["time"]
    assert v["caveat"] is None
    return kill


def wasted_until_exit(v: Record) -> float:
    """stop_at → PID 1's exit (the verdict's own time), as wasted_s has it without kill_at."""
    return round((_ns(v["time"]) - _ns(v["stop_at"])) / 1e9, 3)


def _ns(text: str) -> int:
    from sigtrace.timefmt import parse_time

    return parse_time(text)


# --- sigtrace explain: a prediction, no tracing -----------------------------------------------


def test_shellform_stop_is_predicted_as_ignored_by_pid1(
    container_factory: ContainerFactory,
) -> None:
    c = ready(container_factory, "explain-shell", "st-shellform")
    code, pred = explain(c.name)
    assert (code, pred["expect"], pred["graceful"]) == (10, "ignored_by_pid1", False)
    assert [p["comm"] for p in pred["processes"][:2]] == ["sh", "server.sh"]


def test_execform_stop_is_predicted_as_graceful(container_factory: ContainerFactory) -> None:
    c = ready(container_factory, "explain-exec", "st-execform")
    code, pred = explain(c.name)
    assert (code, pred["expect"], pred["graceful"]) == (0, "graceful", True)


def ready(
    container_factory: ContainerFactory, name: str, image: str, *args: str, **opts: object
) -> Container:
    """A container of `image` (run with `args`), once its PID 1 has said it is ready."""
    c = container_factory(name, image, *args, **opts)
    c.wait_for_log("ready")
    return c


def stopped(
    container_factory: ContainerFactory, name: str, image: str, tmp_path: Path, backend: str
) -> tuple[Container, list[Record], Record]:
    """A ready container stopped under `sigtrace --backend`: it, the records, the stop signal's."""
    c = ready(container_factory, name, image)
    recs = trace_stop(c, tmp_path, backend)
    return c, recs, the_stop(recs, backend)


# --- the stories, per backend -----------------------------------------------------------------


def test_shellform_stop_is_told_as_ignored_by_pid1(
    container_factory: ContainerFactory, tmp_path: Path, backend: str
) -> None:
    c, recs, term = stopped(container_factory, "story-shell", "st-shellform", tmp_path, backend)
    assert (term["outcome"], term["reason"]) == ("ignored", "pid1_no_handler")
    v = the_verdict(recs, c)
    assert v["verdict"] == "ignored_by_pid1" and v["exit_code"] == 137
    assert "exec form" in v["hint"] or "--init" in v["hint"]
    assert v["stop_at"] == term["time"]
    assert 1.5 <= v["wasted_s"] <= 4
    if the_kill(recs, v, backend) is None:
        assert v["wasted_s"] == wasted_until_exit(v)
    else:
        assert v["wasted_s"] == v["grace_s"]

    # The namespace teardown's SIGKILLs to what PID 1 left (server.sh, its sleep).
    teardown = [r for r in recs if r["type"] == "signal" and r["scope"] == "pidns_teardown"]
    victims = {p["pid"]: p["comm"] for p in v["killed_by_teardown"]}
    if backend == "ptrace":
        assert teardown == [] and victims == {}  # SIGKILL never seen
        return
    assert "server.sh" in victims.values() and set(victims.values()) <= {"server.sh", "sleep"}
    assert all(r["sender"]["pid"] == c.pid for r in teardown)
    named = [r for r in teardown if (r["target"]["container"] or {}).get("id") == c.id]
    assert set(victims) == {r["target"]["pid"] for r in named}
    gone = [r for r in teardown if r not in named]
    if backend == "core":
        assert gone == []  # the kernel's own view, at send time
    else:
        # gone from /proc before the record was handled: unknown, not guessed
        for r in gone:
            assert (r["target"]["ns_pid"], r["target"]["pid1"]) == (None, None)
            assert r["target_state"]["handler"] is None


def test_execform_stop_is_told_as_graceful(
    container_factory: ContainerFactory, tmp_path: Path, backend: str
) -> None:
    c, recs, term = stopped(container_factory, "story-exec", "st-execform", tmp_path, backend)
    assert (term["outcome"], term["target_state"]["handler"]) == ("delivered", "handler")
    assert any(
        r["type"] == "deliver" and r["target"]["pid"] == c.pid and r["action"] == "handler"
        for r in recs
    )
    assert pid1_signals(recs, "SIGKILL") == []
    v = the_verdict(recs, c)
    assert (v["exit_code"], v["kill_at"]) == (0, None)
    graceful_or_unsure(v, recs)
    if backend == "ptrace":
        assert v["killed_by_teardown"] == []  # the teardown's SIGKILL is not seen either


def test_sig_ign_stop_is_told_as_ignored_sig_ign(
    container_factory: ContainerFactory, tmp_path: Path, backend: str
) -> None:
    c, recs, term = stopped(container_factory, "story-sigign", "st-sigign", tmp_path, backend)
    assert (term["outcome"], term["reason"]) == ("ignored", "sig_ign")
    assert term["target_state"]["handler"] == "ignore"
    v = the_verdict(recs, c)
    assert (v["verdict"], v["exit_code"]) == ("ignored_sig_ign", 137)
    assert 1.5 <= v["wasted_s"] <= 4 and "SIG_IGN" in v["hint"]
    if the_kill(recs, v, backend) is None:
        assert v["wasted_s"] == wasted_until_exit(v)


def test_trap_that_does_not_pass_it_on_is_told_as_not_forwarded(
    container_factory: ContainerFactory, tmp_path: Path, backend: str
) -> None:
    c = ready(container_factory, "story-noforward", "st-noforward")
    before = None
    if backend == "ptrace":
        # What shows that server.sh ran before the stop is a newer pid seen before it: the
        # other backends see the stop's sender (a new `runc kill`), ptrace does not (outside
        # the pid namespace). The exit of the loop's next `sleep` is one.
        def before(recs: list[Record]) -> bool:
            return any(r["type"] == "exit" for r in recs)

    recs = trace_stop(c, tmp_path, backend, before=before)
    term = the_stop(recs, backend)
    assert (term["outcome"], term["target_state"]["handler"]) == ("delivered", "handler")
    v = the_verdict(recs, c)
    assert (v["verdict"], v["exit_code"], v["forwarded"]) == ("not_forwarded", 137, [])
    (server,) = [e for e in v["exits"] if e["comm"] == "server.sh"]
    assert f"server.sh({server['pid']}" in v["hint"] and "sleep(" not in v["hint"]
    assert 1.5 <= v["wasted_s"] <= 4
    if the_kill(recs, v, backend) is None:
        assert v["wasted_s"] == wasted_until_exit(v)
        assert server["ended_by"] == "signal"  # SIGKILL, by whom is not seen
    else:
        assert server["ended_by"] == "teardown"


def test_handler_longer_than_the_grace_period_is_told_as_slow_shutdown(
    container_factory: ContainerFactory, tmp_path: Path, backend: str
) -> None:
    c, recs, term = stopped(container_factory, "story-slowstop", "st-slowstop", tmp_path, backend)
    assert term["outcome"] == "delivered"
    v = the_verdict(recs, c)
    assert (v["verdict"], v["exit_code"], v["wasted_s"]) == ("slow_shutdown", 137, 0.0)
    assert "terminationGracePeriodSeconds" in v["hint"]
    if the_kill(recs, v, backend) is not None:
        assert 1.5 <= v["grace_s"] <= 4


def test_docker_kill_is_told_as_killed_without_stop_signal(
    container_factory: ContainerFactory, tmp_path: Path, backend: str
) -> None:
    c = ready(container_factory, "story-kill", "st-execform")
    recs = trace_stop(c, tmp_path, backend, kill=True)
    assert pid1_signals(recs, "SIGTERM") == []
    v = the_verdict(recs, c)
    assert (v["verdict"], v["exit_code"]) == ("killed_without_stop_signal", 137)
    assert v["stop_at"] is None and v["wasted_s"] is None and v["grace_s"] is None
    the_kill(recs, v, backend)


def test_tini_forwards_the_stop_and_it_is_told_as_graceful(
    container_factory: ContainerFactory, tmp_path: Path, backend: str
) -> None:
    c = ready(container_factory, "story-tini", "st-execform", init=True)
    recs = trace_stop(c, tmp_path, backend, verdict=backend != "ptrace")
    forwarded = [
        r
        for r in recs
        if r["type"] == "signal" and r["sender"]["pid"] == c.pid and r["signal"] == "SIGTERM"
    ]
    assert [r["target"]["comm"] for r in forwarded] == ["server.sh"]
    (exit1,) = pid1_exits(recs, c)
    assert exit1["exit_code"] == 0
    if backend == "ptrace":
        # tini waits for signals in sigtimedwait: no signal-delivery-stop, so the stop is not
        # seen, and without it (or a SIGKILL) there is no story to tell; its forward is seen.
        assert pid1_signals(recs, "SIGTERM") == []
        assert [r for r in recs if r["type"] == "verdict"] == []
        assert cannot_see(recs, "sigtimedwait")
        return
    term = the_stop(recs, backend)
    if backend == "core":
        # sigtimedwait unblocks what it waits for: the kernel's mask at send time says so
        assert (term["outcome"], term["target_state"]["waiting"]) == ("delivered", True)
    else:
        # The mask is read from /proc afterwards, when tini may be back to blocking everything
        # (its sigtimedwait returned): then pending (blocked), as /proc says. Whether it was
        # waiting in sigtimedwait is not known at all: null.
        assert "target_state.blocked" in term["derived"]
        assert term["target_state"]["waiting"] is None and cannot_see(recs, "waiting")
        blocked = term["target_state"]["blocked"]
        assert (term["outcome"], term["reason"]) == (
            ("pending", "blocked") if blocked else ("delivered", None)
        )
    v = the_verdict(recs, c)
    assert (v["exit_code"], v["kill_at"]) == (0, None)
    graceful_or_unsure(v, recs)
    assert [(f["sender"]["pid"], f["target"]["comm"]) for f in v["forwarded"]] == [
        (c.pid, "server.sh")
    ]
