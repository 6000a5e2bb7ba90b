"""trace_pipe lines → dicts, on lines recorded from the real kernel (tests/data/tracefs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sigtrace.backends.tracefs_parse import parse_line, saved_names, signed32

DATA = Path(__file__).resolve().parents[1] / "data" / "tracefs"
LINES = (DATA / "scenarios.trace").read_text().splitlines()
PIDS = json.loads((DATA / "scenarios.pids.json").read_text())


def test_every_recorded_line_parses() -> None:
    parsed = [parse_line(line) for line in LINES]
    assert all(p is not None for p in parsed), [
        line for line, p in zip(LINES, parsed, strict=True) if p is None
    ]
    events = {p["event"] for p in parsed if p}
    assert events >= {"signal_generate", "signal_deliver", "sys_enter", "sys_exit"}
    assert "sched_process_exit" in events


def _first(event: str, **want: object) -> dict:
    for line in LINES:
        p = parse_line(line)
        if p and p["event"] == event and all(p.get(k) == v for k, v in want.items()):
            return p
    raise AssertionError(f"no {event} {want} in the recording")


def test_generate_line_names_sender_target_and_result() -> None:
    p = _first("signal_generate", pid=PIDS["init"], result=1)
    assert p["sig"] == 15 and p["code"] == 0 and p["errno"] == 0 and p["group"] == 1
    assert p["comm"] == "sh"
    assert p["common_pid"] == p["common_tgid"]
    assert p["ts_ns"] % 1000 == 0 and p["ts_ns"] > 0  # microseconds, as ns
    teardown = _first("signal_generate", code=128)
    assert teardown["common_pid"] == PIDS["init"] and teardown["pid"] == PIDS["init_child"]


def test_deliver_line_has_the_handler_address() -> None:
    p = _first("signal_deliver", common_pid=PIDS["handler"])
    assert p["sig"] == 15 and p["sa_handler"] > 1
    kill = _first("signal_deliver", common_pid=PIDS["termed"])
    assert kill["sig"] == 9 and kill["sa_handler"] == 0  # a default-fatal SIGTERM, reported


def test_syscall_arguments_below_ten_are_decimal_the_others_hex() -> None:
    enter = _first("sys_enter", common_pid=PIDS["init"])  # sh: kill(1, SIGTERM) = "pid: 1"
    assert enter["syscall"] == "kill" and enter["args"] == {"pid": 1, "sig": 15}
    kill = _first("sys_enter", common_pid=PIDS["recorder"], args={"pid": PIDS["killed"], "sig": 9})
    assert kill["syscall"] == "kill"


def test_kill_of_a_process_group_has_a_negative_pid() -> None:
    enters = [
        p
        for p in map(parse_line, LINES)
        if p and p["event"] == "sys_enter" and signed32(p["args"]["pid"]) < 0
    ]
    assert len(enters) == 1
    assert signed32(enters[0]["args"]["pid"]) == -PIDS["pgrp"][0]


def test_failed_call_returns_minus_errno() -> None:
    p = _first("sys_exit", common_pid=PIDS["eperm_sender"])
    assert p["ret"] == -1  # EPERM


def test_process_exit_line_says_group_dead() -> None:
    p = _first("sched_process_exit", pid=PIDS["termed"])
    assert p["group_dead"] is True and p["comm"] == "sleep"


@pytest.mark.parametrize(
    ("line", "want"),
    [
        # comm with a space and a dash; irq-info off; no tgid column
        (
            " my-proc 1-42    [003]  100.000001: signal_generate: sig=9 errno=0 code=128 "
            "comm=a pid=7 b pid=43 grp=1 res=0",
            {
                "common_comm": "my-proc 1",
                "common_pid": 42,
                "common_tgid": None,
                "cpu": 3,
                "ts_ns": 100_000_001_000,
                "comm": "a pid=7 b",
                "pid": 43,
                "result": 0,
            },
        ),
        # the kernel's comm cache forgot it; tgid unknown
        (
            "           <...>-77      (-------) [000] d..1.  5.000002: signal_deliver: sig=10 "
            "errno=0 code=-6 sa_handler=1 sa_flags=0",
            {
                "common_comm": None,
                "common_pid": 77,
                "common_tgid": None,
                "code": -6,
                "sa_handler": 1,
            },
        ),
        (
            "  oom-5 (  5) [000] .....  9.000000: mark_victim: pid=6 comm=hog total-vm=1kB "
            "anon-rss=1kB file-rss:0kB shmem-rss:0kB uid=1000 pgtables=4kB oom_score_adj=0",
            {"event": "mark_victim", "pid": 6, "comm": "hog", "uid": 1000},
        ),
        (
            "  sh-5 (  5) [000] .....  9.000000: sys_tgkill(tgid: 0x10, pid: 0x11, sig: 0xa)",
            {"event": "sys_enter", "syscall": "tgkill", "args": {"tgid": 16, "pid": 17, "sig": 10}},
        ),
        ("CPU:2 [LOST 17 EVENTS]", {"event": "lost", "cpu": 2, "count": 17}),
    ],
)
def test_edge_lines(line: str, want: dict) -> None:
    p = parse_line(line)
    assert p is not None
    assert {k: p.get(k) for k in want} == want


@pytest.mark.parametrize(
    "line",
    [
        "",
        "garbage",
        "  sh-5 (  5) [000] .....  9.000000: sched_switch: prev_comm=a",  # not ours
        "  sh-5 (  5) [000] .....  9.000000: signal_generate: sig=x",  # truncated
        "  sh-5 (  5) [000] .....  9.000000: sys_kill(pid: zz, sig: 1)",
    ],
)
def test_unknown_or_garbled_lines_are_none(line: str) -> None:
    assert parse_line(line) is None


def test_signed32() -> None:
    assert signed32(0xFFFFFFFF) == -1
    assert signed32(0xFFFFFFFFFFFFABE5) == -0x541B
    assert signed32(15) == 15


def test_saved_names_are_ftraces_caches_for_the_tids_asked() -> None:
    cmdlines = "31000 kill\n12 ksoftirqd/0\n"
    tgids = "31000 31000\n31002 31000\n12 12\n31003 0\n"
    assert saved_names(cmdlines, tgids, {31000, 31002, 31003, 4}) == {
        31000: ("kill", 31000),
        31002: (None, 31000),  # a thread whose comm was not kept
    }
