"""One line of an ftrace instance's trace_pipe → one dict. Pure: text in, values out.

The line is the kernel's default text output for the events the tracefs backend enables:

    sh-17663   (  17663) [000] d..1.  5572.984135: signal_generate: sig=10 errno=0 code=0 ...
    bash-17659 (  17659) [000] .....  5573.085574: sys_kill(pid: 0x44fe, sig: 0xf)
    bash-17659 (  17659) [000] .....  5573.085599: sys_kill -> 0xfffffffffffffffd

The task before the `-` is the current task (`common_pid`, its comm from the kernel's comm
cache, `<...>` when that forgot it); the `(tgid)` column is there with options/record-tgid.
Field names are the events' own (tracefs `format` files), not the print labels: `grp=` is
`group`, `res=` is `result`. comm fields may hold spaces and `=`: the patterns anchor on
the fields after them. An unknown or garbled line is None, never an exception.
"""

from __future__ import annotations

import re
from typing import Any

Parsed = dict[str, Any]

_PREFIX = re.compile(
    r"^\s*(?P<comm>.*)-(?P<pid>\d+)\s+"
    r"(?:\(\s*(?P<tgid>\d+|-+)\)\s+)?"
    r"\[(?P<cpu>\d+)\]\s+"
    r"(?:[^\s\[\]]{4,6}\s+)?"  # irq-info flags (d..1.), absent with options/irq-info off
    r"(?P<sec>\d+)\.(?P<usec>\d{6}):\s(?P<rest>.*)$"
)
_EVENT = re.compile(r"^(?P<event>\w+): (?P<body>.*)$")
_SYS_ENTER = re.compile(r"^sys_(?P<name>\w+)\((?P<args>.*)\)$")
_SYS_EXIT = re.compile(r"^sys_(?P<name>\w+) -> (?P<ret>0x[0-9a-f]+|-?\d+)$")
_LOST = re.compile(r"^CPU:(?P<cpu>\d+) \[LOST (?P<count>\d+) EVENTS\]$")

_I = r"-?\d+"
# Each field's value is named by its pattern group; _KINDS says how to read it (else: int).
_BODIES: dict[str, re.Pattern[str]] = {
    "signal_generate": re.compile(
        rf"^sig=(?P<sig>{_I}) errno=(?P<errno>{_I}) code=(?P<code>{_I}) comm=(?P<comm>.*) "
        rf"pid=(?P<pid>{_I}) grp=(?P<group>{_I}) res=(?P<result>{_I})$",
        re.S,
    ),
    "signal_deliver": re.compile(
        rf"^sig=(?P<sig>{_I}) errno=(?P<errno>{_I}) code=(?P<code>{_I}) "
        r"sa_handler=(?P<sa_handler>[0-9a-f]+) sa_flags=(?P<sa_flags>[0-9a-f]+)$"
    ),
    "sched_process_exit": re.compile(
        rf"^comm=(?P<comm>.*) pid=(?P<pid>{_I}) prio=(?P<prio>{_I})"
        r"(?: group_dead=(?P<group_dead>true|false))?$",
        re.S,
    ),
    "mark_victim": re.compile(
        rf"^pid=(?P<pid>{_I}) comm=(?P<comm>.*?)(?: total-vm=.*? uid=(?P<uid>\d+) .*)?$", re.S
    ),
}
_KINDS = {"comm": "str", "sa_handler": "hex", "sa_flags": "hex", "group_dead": "bool"}
_MASK64 = (1 << 64) - 1


def _value(kind: str, text: str | None) -> Any:
    if text is None:
        return None
    if kind == "int":
        return int(text)
    if kind == "hex":
        return int(text, 16)
    if kind == "bool":
        return text == "true"
    return text


def _signed64(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >> 63 else value


def _syscall_args(text: str) -> dict[str, int] | None:
    """`pid: 0x44fe, sig: 9` → {"pid": 0x44fe, "sig": 9}: the raw 64-bit arguments.

    The kernel prints values below 10 in decimal and the others in hex (`0x...`)."""
    out = {}
    for part in text.split(", "):
        name, sep, value = part.partition(": ")
        if not sep:
            return None
        try:
            out[name] = int(value, 0)  # base from the prefix
        except ValueError:
            return None
    return out


def parse_line(line: str) -> Parsed | None:
    """One trace_pipe line (without or with its newline) → a dict, or None."""
    line = line.rstrip("\n")
    lost = _LOST.match(line)
    if lost:
        return {"event": "lost", "cpu": int(lost["cpu"]), "count": int(lost["count"])}
    m = _PREFIX.match(line)
    if m is None:
        return None
    comm = m["comm"].lstrip()
    tgid = m["tgid"]
    out: Parsed = {
        "common_comm": None if comm == "<...>" else comm,
        "common_pid": int(m["pid"]),
        "common_tgid": int(tgid) if tgid and tgid.isdigit() and int(tgid) > 0 else None,
        "cpu": int(m["cpu"]),
        "ts_ns": int(m["sec"]) * 1_000_000_000 + int(m["usec"]) * 1_000,
    }
    rest = m["rest"]
    if sc := _SYS_EXIT.match(rest):
        out.update(event="sys_exit", syscall=sc["name"], ret=_signed64(int(sc["ret"], 0)))
        return out
    if sc := _SYS_ENTER.match(rest):
        args = _syscall_args(sc["args"])
        if args is None:
            return None
        out.update(event="sys_enter", syscall=sc["name"], args=args)
        return out
    ev = _EVENT.match(rest)
    if ev is None or ev["event"] not in _BODIES:
        return None
    body = _BODIES[ev["event"]].match(ev["body"])
    if body is None:
        return None
    out["event"] = ev["event"]
    for name, text in body.groupdict().items():
        out[name] = _value(_KINDS.get(name, "int"), text)
    return out


def saved_names(cmdlines: str, tgids: str, tids: set[int]) -> dict[int, tuple[str | None, int]]:
    """`tids` in ftrace's caches as read now: saved_cmdlines (`pid comm`) and saved_tgids
    (`pid tgid`) → {tid: (comm or None, tgid)}; a tid without a tgid is left out."""
    comms: dict[int, str] = {}
    for line in cmdlines.splitlines():
        pid, _, comm = line.partition(" ")
        if pid.isdigit() and int(pid) in tids:
            comms[int(pid)] = comm
    out = {}
    for line in tgids.splitlines():
        pid, _, tgid = line.partition(" ")
        if pid.isdigit() and int(pid) in tids and tgid.isdigit() and int(tgid) > 0:
            out[int(pid)] = (comms.get(int(pid)), int(tgid))
    return out


def signed32(value: int) -> int:
    """A syscall argument (an unsigned 64-bit register) as the pid_t/int it was."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >> 31 else value
