"""The verdict record's nested objects (README, sigtrace/schema.py), as the story modules
build them. Values read from other records are those records' fields: None where unknown."""

from __future__ import annotations

from typing import TypedDict


class ShortProc(TypedDict):
    pid: int | None
    ns_pid: int | None
    comm: str | None


class Culprit(ShortProc):
    cmdline: str | None
    pid1: bool


class Victim(TypedDict):
    """A process the pid namespace's teardown SIGKILLed."""

    pid: int | None
    comm: str | None


class Forward(TypedDict):
    time: str
    signal: str | None
    sender: ShortProc
    target: ShortProc
    outcome: str | None


class HopEntry(Forward):
    reason: str | None
    scope: str | None
    action: str | None
    result: str


# Functional form: `from` is a keyword.
ProcessEntry = TypedDict(
    "ProcessEntry",
    {
        "pid": int | None,
        "ns_pid": int | None,
        "comm": str | None,
        "cmdline": str | None,
        "state": str,
        "ending": str,
        "stop_handler": bool | None,
        "signal": str | None,
        "from": ShortProc | None,
    },
)


class ExitEntry(TypedDict):
    pid: int | None
    comm: str | None
    exit_code: int | None
    signal: str | None
    ended_by: str


class Evidence(TypedDict):
    time: str
    type: str
    what: str
