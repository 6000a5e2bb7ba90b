"""Termination stories from streams recorded with real Docker stops (tests/data/stories, made by
record.py there): one verdict per stop, whatever the arrival order or the interleaving."""

from __future__ import annotations

import copy
import io
import json
import random
from pathlib import Path

import pytest

from sigtrace.output.text import TextWriter
from sigtrace.stories import StoryTracker, stop_signal_number
from sigtrace.timefmt import Clock, parse_time

STORIES = Path(__file__).parents[1] / "data" / "stories"
FORMAT = Clock(0).iso  # ns since the epoch -> RFC 3339, the records' own format


def load(name: str) -> list[dict]:
    return [json.loads(line) for line in (STORIES / f"{name}.jsonl").read_text().splitlines()]


def run(records: list[dict], tracker: StoryTracker | None = None) -> list[dict]:
    tracker = tracker or StoryTracker()
    out: list[dict] = []
    for rec in records:
        out += tracker.feed(rec)
    return out + tracker.flush()


def one(name: str, caught: dict[str, list[str]] | None = None) -> dict:
    records = load(name) if caught is None else with_caught(load(name), caught)
    verdicts = run(records)
    assert len(verdicts) == 1, verdicts
    return verdicts[0]


# What these recordings' processes handle (tests/images): server.sh traps TERM, sleep nothing.
CAUGHT = {"server.sh": ["SIGTERM"], "sleep": [], "docker-init": [], "sh": []}


def with_caught(records: list[dict], caught: dict[str, list[str]]) -> list[dict]:
    """The recording as a kernel that reports `caught` (issue 10) records it: on SIGKILL
    records (`target_state.caught`) and exits, by comm."""
    out = copy.deepcopy(records)
    for r in out:
        if r["type"] == "signal" and r["signo"] == 9 and r["target"].get("comm") in caught:
            r["target_state"]["caught"] = caught[r["target"]["comm"]]
        if r["type"] == "exit" and r["process"].get("comm") in caught:
            r["caught"] = caught[r["process"]["comm"]]
    return out


def shifted(records: list[dict], delta_ns: int) -> list[dict]:
    """The same records, `delta_ns` later (every `time` field, nested ones too)."""

    def walk(x: object) -> object:
        if isinstance(x, dict):
            return {
                k: FORMAT(parse_time(v) + delta_ns) if k == "time" else walk(v)
                for k, v in x.items()
            }
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return [walk(r) for r in records]  # type: ignore[misc]


def jittered(records: list[dict], seed: int, window_ns: int = 5_000_000) -> list[dict]:
    """Arrival order shuffled within a few ms, as records from several CPUs can come."""
    rng = random.Random(seed)
    keyed = [
        (parse_time(r["time"]) + rng.randrange(window_ns), i, r) for i, r in enumerate(records)
    ]
    return [r for *_, r in sorted(keyed)]


def by_time(*streams: list[dict]) -> list[dict]:
    return sorted((r for s in streams for r in s), key=lambda r: parse_time(r["time"]))


# The recorded stops


def test_shellform_stop_is_ignored_by_pid1_and_wastes_the_grace_period() -> None:
    v = one("shellform")
    assert v["verdict"] == "ignored_by_pid1"
    assert v["complete"] is True
    assert v["pid1"]["comm"] == "sh" and v["pid1"]["cmdline"].startswith("/bin/sh -c")
    assert v["stop_signal"] == "SIGTERM" and v["exit_code"] == 137
    assert 1.5 <= v["wasted_s"] <= 4 and v["wasted_s"] == v["grace_s"]
    assert parse_time(v["kill_at"]) > parse_time(v["stop_at"])
    assert {p["comm"] for p in v["killed_by_teardown"]} == {"server.sh", "sleep"}
    assert "exec form" in v["hint"] and "--init" in v["hint"]
    assert v["evidence"][0]["what"].endswith("ignored (pid1_no_handler)")
    ended = {e["comm"]: e["ended_by"] for e in v["exits"]}
    assert ended["sh"] == "runtime_kill" and ended["server.sh"] == "teardown"
    assert v["exits"][0]["comm"] == "sh"  # PID 1 first


def test_execform_stop_is_graceful() -> None:
    v = one("execform", CAUGHT)
    assert v["verdict"] == "graceful" and v["culprit"] is None and v["caveat"] is None
    assert v["kill_at"] is None and v["grace_s"] is None and v["wasted_s"] == 0.0
    assert v["exit_code"] == 0
    # server.sh's own `sleep 1` is left to the teardown: listed, not a reason to fail.
    assert [p["comm"] for p in v["killed_by_teardown"]] == ["sleep"]
    assert v["hint"].startswith("Nothing to fix.")
    assert [(p["comm"], p["state"], p["ending"], p["stop_handler"]) for p in v["processes"]] == [
        ("server.sh", "handled", "exited", True),
        ("sleep", "never_reached", "teardown", False),
    ]


def test_without_caught_a_teardown_victim_is_never_called_graceful() -> None:
    # The same recording as made before `caught`: whether sleep handled SIGTERM is unknown,
    # and a wrapper whose server the teardown killed looks the same. Not graceful on a guess.
    v = one("execform-nocaught")
    assert (v["verdict"], v["killed_by"], v["culprit"]["comm"]) == (
        "not_forwarded",
        "teardown",
        "server.sh",
    )
    assert "whether sleep(7187 ns:7) had a SIGTERM handler is not known" in v["caveat"]
    assert "sleep(7187 ns:7), which the namespace teardown then SIGKILLed" in v["hint"]


def test_tini_receives_and_forwards_and_the_stop_is_graceful() -> None:
    v = one("tini", CAUGHT)
    assert v["verdict"] == "graceful"
    assert v["pid1"]["comm"] == "docker-init"
    fwd = v["forwarded"]
    assert [(f["sender"]["comm"], f["target"]["comm"], f["signal"]) for f in fwd] == [
        ("docker-init", "server.sh", "SIGTERM")
    ]
    assert any("docker-init" in e["what"] and "-> server.sh" in e["what"] for e in v["evidence"])
    hops = [(h["sender"]["comm"], h["target"]["comm"], h["result"]) for h in v["hops"]]
    assert hops == [("runc", "docker-init", "handled"), ("docker-init", "server.sh", "handled")]


def test_docker_kill_is_killed_without_stop_signal() -> None:
    v = one("kill")
    assert v["verdict"] == "killed_without_stop_signal"
    assert v["stop_at"] is None and v["kill_at"] is not None and v["wasted_s"] is None
    assert v["exit_code"] == 137 and "docker stop" in v["hint"]


def test_sig_ign_pid1_is_ignored_sig_ign() -> None:
    v = one("sigign")
    assert v["verdict"] == "ignored_sig_ign"
    assert 1.5 <= v["wasted_s"] <= 4
    assert "SIG_IGN" in v["hint"] and "STOPSIGNAL" in v["hint"]


def test_trap_that_does_not_pass_it_on_is_not_forwarded() -> None:
    v = one("noforward")
    assert v["verdict"] == "not_forwarded"
    assert 1.5 <= v["wasted_s"] <= 4
    assert v["forwarded"] == []
    # server.sh ran before the stop and never got SIGTERM; the loop's later `sleep` is not named.
    assert "server.sh" in v["hint"] and "sleep(" not in v["hint"]


def test_handler_longer_than_the_grace_period_is_slow_shutdown() -> None:
    v = one("slowstop")
    assert v["verdict"] == "slow_shutdown"
    assert v["wasted_s"] == 0.0 and 1.5 <= v["grace_s"] <= 4
    assert "terminationGracePeriodSeconds" in v["hint"]


def test_oom_kill_is_oom_killed_not_a_grace_kill() -> None:
    v = one("oom")
    assert v["verdict"] == "oom_killed"
    assert v["kill_at"] is None and v["grace_s"] is None and v["killed_by_teardown"] == []
    assert any(e["comm"] == "tail" and e["ended_by"] == "oom" for e in v["exits"])
    assert "memory" in v["hint"]


# What a backend that never sees SIGKILL (ptrace) records: PID 1's exit by SIGKILL stands for
# the runtime's kill; when it came is unknown, so kill_at and grace_s stay null.


def test_ptrace_slowstop_is_slow_shutdown_not_graceful() -> None:
    v = one("ptrace-slowstop")
    assert (v["verdict"], v["exit_code"], v["wasted_s"]) == ("slow_shutdown", 137, 0.0)
    assert v["kill_at"] is None and v["grace_s"] is None
    assert "no SIGKILL was seen" in v["caveat"]
    assert v["evidence"][0]["what"].startswith("SIGTERM ? -> slowstop.sh(")  # sender unknown


def test_ptrace_noforward_is_not_forwarded_from_exit_codes() -> None:
    v = one("ptrace-noforward")
    assert v["verdict"] == "not_forwarded" and v["kill_at"] is None
    # wasted until PID 1 exited, the SIGKILL's own time being unknown
    assert v["wasted_s"] == round((parse_time(v["time"]) - parse_time(v["stop_at"])) / 1e9, 3)
    assert 1.5 <= v["wasted_s"] <= 4
    assert "server.sh(" in v["hint"] and "exe(" not in v["hint"]  # the loop's later sleep


def test_ptrace_docker_kill_is_killed_without_stop_signal() -> None:
    v = one("ptrace-kill")
    assert v["verdict"] == "killed_without_stop_signal"
    assert v["stop_at"] is None and v["kill_at"] is None and v["wasted_s"] is None
    assert "no SIGKILL was seen" in v["caveat"]


def without_sigkill(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("signal") != "SIGKILL" or r["type"] == "exit"]


@pytest.mark.parametrize(
    ("name", "verdict"),
    [("slowstop", "slow_shutdown"), ("noforward", "not_forwarded"), ("execform", "graceful")],
)
def test_sigkill_not_traced_is_never_graceful(name: str, verdict: str) -> None:
    # `--signal TERM` on any backend: before, a stop that ended in SIGKILL read "graceful".
    (v,) = run(without_sigkill(with_caught(load(name), CAUGHT)))
    assert v["verdict"] == verdict and v["kill_at"] is None
    assert ("no SIGKILL was seen" in (v["caveat"] or "")) == (verdict != "graceful")


def repid(records: list[dict], new: dict[int, int]) -> list[dict]:
    """The same records with host pids (and tids) renumbered, as after a wrap-around."""
    out = copy.deepcopy(records)
    for r in out:
        for role in ("sender", "target", "process"):
            p = r.get(role)
            if p:
                for k in ("pid", "tid"):
                    p[k] = new.get(p[k], p[k])
    return out


# noforward-nocaught.jsonl: runc 7576 stops noforward.sh 7528 (server.sh 7558 ran before);
# the loop's sleeps 7582 and 7583 come after; runc 7584 sends SIGKILL.
WRAPPED_BEFORE_STOP = {7528: 32600, 7558: 32650, 7559: 32651, 7576: 310, 7582: 315, 7583: 316}
WRAPPED_AFTER_STOP = {7528: 32000, 7558: 32010, 7559: 32011, 7576: 32700, 7582: 301, 7583: 302}


@pytest.mark.parametrize("wrap", [WRAPPED_BEFORE_STOP, WRAPPED_AFTER_STOP], ids=["before", "after"])
def test_pid_wraparound_does_not_change_who_ran_before_the_stop(wrap: dict[int, int]) -> None:
    kill_sender = {7584: wrap[7583] + 1}
    (v,) = run(repid(load("noforward-nocaught"), wrap | kill_sender))
    assert v["verdict"] == "not_forwarded"
    assert f"server.sh({wrap[7558]}" in v["hint"] and "sleep(" not in v["hint"]


def test_pid_wraparound_recorded_slowstop_is_slow_shutdown() -> None:
    # PID 1 32739 from before the wrap; runc 321 stops it, the trap's sleep is 328, SIGKILL
    # from runc 337. Judged by plain pid order, sleep 328 "ran before" and was not signalled.
    v = one("slowstop-pidwrap")
    assert v["verdict"] == "slow_shutdown" and 1.5 <= v["grace_s"] <= 4


def test_two_containers_stopped_together_get_one_verdict_each() -> None:
    verdicts = run(with_caught(load("two"), CAUGHT))
    got = sorted((v["container"]["name"].split("-")[3], v["verdict"]) for v in verdicts)
    assert got == [("exec", "graceful"), ("shell", "ignored_by_pid1")]


# Order, interleaving, timing


@pytest.mark.parametrize(
    "name",
    [
        "shellform",
        "execform",
        "tini",
        "kill",
        "sigign",
        "noforward",
        "slowstop",
        "oom",
        "ptrace-slowstop",
        "ptrace-noforward",
        "ptrace-kill",
        "slowstop-pidwrap",
    ],
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_arrival_order_within_a_few_ms_changes_nothing(name: str, seed: int) -> None:
    records = load(name)
    assert run(jittered(records, seed)) == run(records)


def test_interleaved_stops_of_several_containers_give_the_same_verdicts() -> None:
    shell, exe, noforward = (
        load("shellform"),
        with_caught(load("execform"), CAUGHT),
        load("noforward"),
    )
    t0 = parse_time(shell[1]["time"])
    # Move the other two so that all three stops overlap, 0.3 s and 0.7 s apart.
    exe = shifted(exe, t0 + 300_000_000 - parse_time(exe[1]["time"]))
    noforward = shifted(noforward, t0 + 700_000_000 - parse_time(noforward[1]["time"]))
    alone = {v["container"]["id"]: v["verdict"] for s in (shell, exe, noforward) for v in run(s)}
    merged = run(jittered(by_time(shell, exe, noforward), seed=7))
    assert {v["container"]["id"]: v["verdict"] for v in merged} == alone
    assert sorted(alone.values()) == ["graceful", "ignored_by_pid1", "not_forwarded"]


def test_verdict_waits_for_the_teardown_then_comes_once() -> None:
    records = load("shellform")
    exit_at = next(i for i, r in enumerate(records) if r["type"] == "exit" and r["process"]["pid1"])
    tracker = StoryTracker()
    early = [v for r in records[: exit_at + 1] for v in tracker.feed(r)]
    assert early == []  # PID 1's exit comes before the teardown's records
    rest = [v for r in records[exit_at + 1 :] for v in tracker.feed(r)]
    assert rest == []  # within the settle window
    end = parse_time(records[exit_at]["time"])
    due = tracker.poll(FORMAT(end + 2_000_000_000))
    assert [v["verdict"] for v in due] == ["ignored_by_pid1"]
    assert due[0]["killed_by_teardown"]  # the teardown records were taken in
    assert tracker.flush() == [] and tracker.poll(FORMAT(end + 9 * 10**9)) == []


def test_wake_in_says_when_the_verdict_is_due_and_nothing_once_told() -> None:
    """The daemon sleeps until then: no story held, no wakeup at all."""
    records = load("shellform")
    exit_at = next(i for i, r in enumerate(records) if r["type"] == "exit" and r["process"]["pid1"])
    tracker = StoryTracker(settle_s=1.5)
    assert tracker.wake_in(records[0]["time"]) is None
    for r in records[: exit_at + 1]:
        tracker.feed(r)
    end = parse_time(records[exit_at]["time"])
    assert tracker.wake_in(FORMAT(end)) == pytest.approx(1.5)
    assert tracker.wake_in(FORMAT(end + 1_000_000_000)) == pytest.approx(0.5)
    assert tracker.wake_in(FORMAT(end + 2_000_000_000)) == 0.0
    assert [v["verdict"] for v in tracker.poll(FORMAT(end + 2_000_000_000))] == ["ignored_by_pid1"]
    assert tracker.wake_in(FORMAT(end + 2_000_000_000)) is None


def test_flush_mid_story_is_marked_incomplete() -> None:
    records = load("shellform")
    until_kill = [r for r in records if r["type"] == "start" or r.get("signal") != "SIGKILL"]
    until_kill = until_kill[: next(i for i, r in enumerate(until_kill) if r["type"] == "exit")]
    (v,) = run(until_kill)
    assert v["verdict"] == "ignored_by_pid1" and v["complete"] is False
    assert v["kill_at"] is None and v["exit_code"] is None
    assert "had not exited" in v["caveat"]


def later(records: list[dict], seconds: float) -> str:
    """The records' clock, `seconds` after the last of them."""
    return FORMAT(parse_time(records[-1]["time"]) + int(seconds * 10**9))


def test_a_container_whose_pid1_exit_is_never_seen_is_not_kept_for_good() -> None:
    """A job whose PID 1 exits unseen (a backend reports only exits in traced signals): its
    records must not pin memory while the daemon runs for weeks."""
    records = load("shellform")
    routine = [r for r in records if r["type"] == "exit" and not r["process"]["pid1"]][:1]
    assert routine, "the recording has a child's exit"
    t = StoryTracker()
    assert t.feed(routine[0]) == [] and t.held() == 1
    assert t.poll(later(routine, 60)) == [] and t.held() == 1  # a stop may still come
    assert t.poll(later(routine, 601)) == [] and t.held() == 0  # nothing started: no verdict


def test_a_stop_that_never_ends_is_told_after_an_hour_and_forgotten() -> None:
    records = load("shellform")
    until_kill = [r for r in records if r["type"] == "start" or r.get("signal") != "SIGKILL"]
    until_kill = until_kill[: next(i for i, r in enumerate(until_kill) if r["type"] == "exit")]
    t = StoryTracker()
    for r in until_kill:
        assert t.feed(r) == []
    assert t.poll(later(until_kill, 1800)) == [] and t.held() == 1
    (v,) = t.poll(later(until_kill, 3601))
    assert v["verdict"] == "ignored_by_pid1" and v["complete"] is False
    assert "had not exited" in v["caveat"] and t.held() == 0


def test_no_story_when_neither_the_stop_signal_nor_sigkill_is_traced() -> None:
    # `--signal USR2`: PID 1's exit by SIGKILL is still seen (exits of container inits are
    # reported), but no termination was asked about.
    assert run(load("shellform"), StoryTracker(traced={12})) == []
    (v,) = run(load("shellform"), StoryTracker(traced={9}))  # KILL alone: told, with a caveat
    assert "--signal TERM" in v["caveat"]


def test_no_story_without_a_stop_a_kill_or_an_oom() -> None:
    before_stop = [r for r in load("execform") if r["type"] in ("start", "exit")]
    assert run(before_stop[:2]) == []  # a routine exit of a child: no story


def test_a_restarted_container_gets_a_second_story() -> None:
    records = with_caught(load("execform"), CAUGHT)
    again = shifted(records, 30 * 10**9)
    assert [v["verdict"] for v in run(records + again)] == ["graceful", "graceful"]


def test_image_stop_signal_is_followed() -> None:
    records = with_caught(load("execform"), {"server.sh": ["SIGUSR1"], "sleep": []})
    for r in records:
        if r.get("signal") == "SIGTERM":
            r["signal"], r["signo"] = "SIGUSR1", 10
    cid = records[1]["target"]["container"]["id"]
    assert run(records) == []  # SIGUSR1 is no stop signal by default: PID 1 just exited
    (v,) = run(records, StoryTracker({cid: 10}))
    assert v["verdict"] == "graceful" and v["stop_signal"] == "SIGUSR1"


def test_untraced_stop_signal_is_a_caveat() -> None:
    (v,) = run(load("kill"), StoryTracker(traced={9}))
    assert "--signal TERM" in v["caveat"]


def test_never_graceful_when_the_runtime_sigkill_ended_a_process() -> None:
    records = copy.deepcopy(load("execform"))
    stop = next(r for r in records if r.get("signal") == "SIGTERM")
    child_exit = next(r for r in records if r["type"] == "exit" and not r["process"]["pid1"])
    kill = copy.deepcopy(stop)
    kill.update(signal="SIGKILL", signo=9, target=child_exit["process"], reason=None)
    kill["time"] = FORMAT(parse_time(child_exit["time"]) - 1000)
    child_exit.update(exit_code=137, signal="SIGKILL")
    (v,) = run(by_time(records, [kill]))
    assert v["verdict"] != "graceful"


def test_own_verdicts_and_foreign_records_are_ignored() -> None:
    tracker = StoryTracker()
    (v,) = run(load("shellform"))
    assert tracker.feed(v) == []
    assert tracker.feed({"schema": "sigtrace.v1", "type": "lost", "time": v["time"]}) == []
    assert tracker.flush() == []


# Helpers and text


def test_parse_time_round_trips_nanoseconds() -> None:
    ns = 1_795_000_000_123_456_789
    assert parse_time(FORMAT(ns)) == ns
    assert parse_time("2026-11-26T19:36:27.5Z") == parse_time("2026-11-26T19:36:27.500000000Z")


@pytest.mark.parametrize(
    ("text", "signo"),
    [("SIGUSR1", 10), ("USR1", 10), ("10", 10), ("SIGRTMIN+3", 37), ("", None), (None, None)],
)
def test_stop_signal_number(text: str | None, signo: int | None) -> None:
    assert stop_signal_number(text) == signo
    assert stop_signal_number("NOPE") is None


def render(v: dict, color: bool = False) -> str:
    buf = io.StringIO()
    TextWriter(buf, color=color).write(v)
    return buf.getvalue()


def test_text_story_reads_at_a_glance() -> None:
    text = render(one("shellform"))
    lines = text.splitlines()
    assert "story" in lines[0] and "st-rec-shellform" in lines[0]
    assert lines[1].startswith("  +0.000s  SIGTERM runc(")
    assert any(line.startswith("  +2.0") and "SIGKILL runc(" in line for line in lines)
    assert "verdict: ignored_by_pid1: SIGTERM dropped" in text
    assert "fix: PID 1 is a shell" in text
    assert "\033" not in text


def test_text_story_colour_only_when_enabled_and_untrusted_text_escaped() -> None:
    v = one("shellform")
    assert "\033[1;31mignored_by_pid1\033[0m" in render(v, color=True)
    v = json.loads(json.dumps(v).replace('"sh"', '"sh\\u001b[2J"'))
    v["evidence"][0]["what"] = "evil\x1b]0;owned\x07 name"
    text = render(v)
    assert "\x1b" not in text and "\x07" not in text and "\\x1b" in text


def test_ptrace_oom_kill_is_told_from_the_cgroups_counter_not_guessed() -> None:
    # Recorded for real: ptrace never sees the OOM killer's SIGKILL; the exit of `tail` by
    # SIGKILL is marked `oom` because the container's memory cgroup counted an OOM kill.
    records = load("ptrace-oom")
    (tail,) = [r for r in records if r["type"] == "exit" and r["process"]["comm"] == "tail"]
    assert (tail["signal"], tail["oom"]) == ("SIGKILL", True)
    v = one("ptrace-oom")
    assert v["verdict"] == "oom_killed" and v["caveat"] is None
