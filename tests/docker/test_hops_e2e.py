"""Stories hop by hop, end to end: real containers whose PID 1 is a wrapper, an init or a
program that blocks the stop signal (image st-hops, tests/images), stopped with `docker stop`
under `sigtrace --container NAME --backend B`.

On the CO-RE backend each story gets its exact verdict and culprit. Another backend may see
less (the `start` record's `cannot_see` says what): there the verdict is the same, or another
one with a `caveat` saying what could not be seen — never `graceful` where work was lost.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from test_stories_e2e import explain, ready, the_verdict, trace_stop

from sigtrace.commands.explain import EXIT_NOT_GRACEFUL
from sigtrace.predict import EXIT_UNSURE

if TYPE_CHECKING:
    from tests.docker.conftest import ContainerFactory

pytestmark = pytest.mark.docker

Record = dict[str, Any]


def stop_story(
    container_factory: ContainerFactory,
    tmp_path: Path,
    backend: str,
    entrypoint: str,
    *args: str,
    **opts: object,
) -> tuple[Record, list[Record]]:
    c = ready(
        container_factory,
        f"hops-{Path(entrypoint).name.split('.')[0]}",
        "st-hops",
        *args,
        entrypoint=entrypoint,
        **opts,
    )
    recs = trace_stop(c, tmp_path, backend)
    return the_verdict(recs, c), recs


def teardown_ending(backend: str) -> str:
    # ptrace sees no SIGKILL, only the exit it causes: who sent it is not known
    return "sigkill" if backend == "ptrace" else "teardown"


def processes(v: Record) -> dict[str, Record]:
    """comm -> its entry in the verdict's tree (the `sleep`s of server.sh's loop left out)."""
    return {p["comm"]: p for p in v["processes"] if p["comm"] != "sleep"}


def judged_or_said_why(v: Record, expected: str, backend: str) -> bool:
    """The CO-RE backend's verdict exactly; elsewhere the same, or a caveat saying why not."""
    if backend == "core":
        assert v["caveat"] is None, v["caveat"]
        assert v["verdict"] == expected, v
        return True
    if v["verdict"] == expected:
        return True
    assert v["caveat"], f"{backend}: {v['verdict']} instead of {expected}, and no caveat: {v}"
    return False


def test_wrapper_that_exits_first_is_not_forwarded(
    container_factory: ContainerFactory, tmp_path: Path, backend: str
) -> None:
    v, _ = stop_story(container_factory, tmp_path, backend, "/bin/wrapexit.sh")
    # The container exits 0 and PID 1 handled SIGTERM: every syscall tracer says "fine".
    assert v["exit_code"] == 0 and v["verdict"] != "graceful", v
    if not judged_or_said_why(v, "not_forwarded", backend):
        return
    assert v["culprit"]["pid1"] is True and v["culprit"]["comm"] == "wrapexit.sh"
    assert v["killed_by"] == "teardown"
    server = processes(v)["server.sh"]
    assert (server["state"], server["ending"]) == ("never_reached", teardown_ending(backend))
    if backend == "core":
        assert server["stop_handler"] is True
    assert "without passing it to server.sh(" in v["hint"]


def test_wrapper_that_forwards_and_waits_is_graceful(
    container_factory: ContainerFactory, tmp_path: Path, backend: str
) -> None:
    v, _ = stop_story(container_factory, tmp_path, backend, "/bin/forwardwait.sh")
    assert v["exit_code"] == 0
    if not judged_or_said_why(v, "graceful", backend):
        return
    server = processes(v)["server.sh"]
    assert (server["state"], server["ending"]) == ("handled", "exited")
    assert [h["target"]["comm"] for h in v["hops"]][:2] == ["forwardwait.sh", "server.sh"]


def test_two_level_wrapper_blames_the_middle_shell(
    container_factory: ContainerFactory, tmp_path: Path, backend: str
) -> None:
    v, _ = stop_story(container_factory, tmp_path, backend, "/bin/outer.sh")
    assert v["verdict"] != "graceful", v
    if not judged_or_said_why(v, "not_forwarded", backend):
        return
    assert (v["culprit"]["comm"], v["killed_by"]) == ("middle.sh", "teardown")
    tree = processes(v)
    assert tree["middle.sh"]["state"] == "default_killed"
    assert (tree["server.sh"]["state"], tree["server.sh"]["ending"]) == (
        "never_reached",
        teardown_ending(backend),
    )


def test_setsid_and_kill_of_the_process_group_reaches_the_app(
    container_factory: ContainerFactory, tmp_path: Path, backend: str
) -> None:
    v, recs = stop_story(container_factory, tmp_path, backend, "/bin/pgrp.sh")
    assert v["exit_code"] == 0
    # ptrace sees no system call: the signal's scope (the group) is not known there
    scope = "process" if backend == "ptrace" else "pgrp"
    fanout = [
        r
        for r in recs
        if r["type"] == "signal" and r["scope"] == scope and r["signal"] == "SIGTERM"
    ]
    assert "server.sh" in {r["target"]["comm"] for r in fanout if r["sender"]["comm"] == "pgrp.sh"}
    if not judged_or_said_why(v, "graceful", backend):
        return
    assert processes(v)["server.sh"]["state"] == "handled"


def test_pid1_that_blocks_the_stop_signal_is_blocked(
    container_factory: ContainerFactory, tmp_path: Path, backend: str
) -> None:
    v, _ = stop_story(container_factory, tmp_path, backend, "/bin/blockterm")
    assert v["exit_code"] == 137 and v["verdict"] != "graceful"
    if not judged_or_said_why(v, "blocked", backend):
        return
    assert v["culprit"]["pid1"] is True and v["culprit"]["comm"] == "blockterm"
    assert 1.5 <= v["wasted_s"] <= 4 and "sigprocmask" in v["hint"]


def test_init_forwarding_to_an_app_that_ignores_it_blames_the_app(
    container_factory: ContainerFactory, tmp_path: Path, backend: str
) -> None:
    v, _ = stop_story(container_factory, tmp_path, backend, "/bin/sigign.sh", init=True)
    assert v["exit_code"] == 137 and v["verdict"] != "graceful"
    if not judged_or_said_why(v, "ignored_sig_ign", backend):
        return
    assert v["culprit"]["comm"] == "sigign.sh" and v["culprit"]["pid1"] is False
    assert 1.5 <= v["wasted_s"] <= 4


def test_sig_ign_of_a_stop_signal_other_than_term_names_it_in_the_fix(
    container_factory: ContainerFactory, tmp_path: Path, backend: str
) -> None:
    script = "trap '' QUIT; echo ready; while :; do sleep 1; done"
    v, _ = stop_story(
        container_factory, tmp_path, backend, "/bin/sh", "-c", script, stop_signal="SIGQUIT"
    )
    assert v["stop_signal"] == "SIGQUIT" and v["exit_code"] == 137
    if not judged_or_said_why(v, "ignored_sig_ign", backend):
        return
    assert "trap '' QUIT" in v["hint"] and "trap '' TERM" not in v["hint"]


# --- sigtrace explain before the stop, against what the stop then showed (CO-RE) --------------

EXPLAINED = [
    # PID 1, docker run options, the verdict the stop gets
    ("/bin/wrapexit.sh", {}, "not_forwarded"),
    ("/bin/outer.sh", {}, "not_forwarded"),
    ("/bin/blockterm", {}, "blocked"),
    ("/bin/sigign.sh", {"init": True}, "ignored_sig_ign"),
    ("/bin/forwardwait.sh", {}, "graceful"),
]


@pytest.mark.parametrize(
    ("entrypoint", "opts", "verdict"), EXPLAINED, ids=[Path(e[0]).name for e in EXPLAINED]
)
def test_explain_never_passes_a_stop_that_loses_work(
    container_factory: ContainerFactory,
    tmp_path: Path,
    entrypoint: str,
    opts: dict,
    verdict: str,
) -> None:
    c = ready(
        container_factory, f"hops-explain-{Path(entrypoint).stem}", "st-hops", **opts,
        entrypoint=entrypoint,
    )  # fmt: skip
    code, pred = explain(c.name)
    recs = trace_stop(c, tmp_path, "core")
    v = the_verdict(recs, c)
    assert v["verdict"] == verdict
    # What explain cannot see (whether a trap forwards) makes it unsure (12), never a pass (0);
    # a confident "not graceful" (10) names the verdict the stop then gets.
    if verdict != "graceful":
        assert code in (EXIT_NOT_GRACEFUL, EXIT_UNSURE), pred
    if code == EXIT_NOT_GRACEFUL:
        assert pred["expect"] == verdict and pred["graceful"] is False
    if code == 0:
        assert pred["expect"] == "graceful" == verdict
