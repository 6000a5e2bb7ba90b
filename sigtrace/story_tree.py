"""The facts of one container stop, and its propagation tree: who got the stop signal from
whom, what the kernel did at each hop, and what became of each process. Pure: records in.

- stop: the first stop signal to PID 1 (from the runtime, or `docker exec kill`).
- kill: the first runtime SIGKILL (from outside the container; not the teardown's, not the
  kernel's) at or before PID 1's exit. A backend that never sees SIGKILL (ptrace) has none:
  PID 1's exit by SIGKILL (not an OOM kill) then stands for it (`unseen_kill`).
- hops: the stop, then every signal but SIGKILL sent after it by anyone to a process of the
  container before PID 1's exit (a trap's `kill`, an init's forward, a `kill(-pgid)` fan-out,
  scope `pgrp`), teardown and kernel signals excluded. Each hop's result: `handled` (its
  handler ran, or it took the signal itself: sigwait, no `deliver`), `ignored`, `blocked`
  (left pending), `default_killed`, `failed`.
- nodes: every process of the container alive at the stop: seen in a record up to the stop and
  not exited by then, or a host pid handed out before the stop (pids grow, and wrap at pid_max;
  `runc kill` is a new process for every signal, so the runtime SIGKILL's sender is newer than
  all of them); and, whenever it started, one a hop reached, or one a SIGKILL ended while it
  had a handler for the stop signal (work to do). Each gets one `state` (its hops' best
  result, else `never_reached`; `blocked` becomes `handled` when it acted afterwards: sent a
  signal on, or exited by itself), one
  `ending` (`exited`, `signal` (a fatal signal other than SIGKILL), `runtime_kill`,
  `teardown`, `oom`, `sigkill` (a SIGKILL whose sender no record shows), `running`) and
  `stop_handler`: whether it had a handler for the stop signal, from `caught` (its SIGKILL
  record's `target_state.caught`, else its exit record's `caught`), else from a stop signal
  record to it (`target_state.handler`) or its delivery, else null (unknown).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sigtrace import signals

Rec = dict[str, Any]

STATES = ("handled", "ignored", "blocked", "default_killed", "never_reached")
ENDINGS = ("exited", "signal", "runtime_kill", "teardown", "oom", "sigkill", "running")
SIGKILLED = frozenset({"runtime_kill", "teardown", "sigkill"})
_OUTSIDE_SCOPES = frozenset({"pidns_teardown", "kernel"})
_RESULT_RANK = {"handled": 0, "default_killed": 1, "ignored": 2, "blocked": 3}
HOP_RESULTS = (*_RESULT_RANK, "failed")
_DELIVER_RESULT = {
    "handler": "handled",
    "ignore": "ignored",
    "dropped_by_pid1": "ignored",
    "default_ignore": "ignored",
    "default_stop": "ignored",
    "default_terminate": "default_killed",
    "default_core": "default_killed",
}


def cid_of(proc: Rec | None) -> str | None:
    c = (proc or {}).get("container")
    return c.get("id") if isinstance(c, dict) else None


# record type -> the key of the process a record is about
SUBJECT_KEY = {"signal": "target", "deliver": "target", "exit": "process", "oom": "victim"}


def subject(rec: Rec) -> Rec | None:
    """The process a record is about, whose container the record belongs to."""
    key = SUBJECT_KEY.get(rec.get("type"))  # type: ignore[arg-type]
    return rec.get(key) if key else None


@dataclass
class Item:
    t: int
    rec: Rec

    def key(self) -> tuple[int, str, int, int]:
        # Ties broken by content, not arrival: shuffled input gives the same story.
        subj = subject(self.rec) or {}
        return (self.t, str(self.rec.get("type")), subj.get("pid") or 0, self.rec.get("signo") or 0)


# Record predicates


def is_signal(rec: Rec, signo: int | None = None) -> bool:
    return rec.get("type") == "signal" and (signo is None or rec.get("signo") == signo)


def is_stop(rec: Rec, signo: int) -> bool:
    # STOPSIGNAL SIGKILL gives nothing a chance to stop: judged as a kill, not a stop.
    return (
        signo != signals.SIGKILL
        and is_signal(rec, signo)
        and bool(rec["target"].get("pid1"))
        and rec.get("outcome") != "failed"
    )


def is_runtime_kill(rec: Rec, cid: str) -> bool:
    """SIGKILL from outside the container; the teardown's and the OOM killer's are not."""
    return (
        is_signal(rec, signals.SIGKILL)
        and cid_of(rec["target"]) == cid
        and cid_of(rec.get("sender")) != cid
        and rec.get("scope") not in _OUTSIDE_SCOPES
        and rec.get("outcome") in ("delivered", "pending", "merged")
    )


def is_oom(rec: Rec) -> bool:
    return rec.get("type") == "oom" or (rec.get("type") == "exit" and bool(rec.get("oom")))


def is_sigkilled_pid1_exit(rec: Rec) -> bool:
    # A backend that never sees SIGKILL (ptrace) still sees the exit it causes.
    return (
        rec.get("type") == "exit"
        and bool(rec["process"].get("pid1"))
        and rec.get("signal") == "SIGKILL"
    )


def _is_hop(rec: Rec, cid: str) -> bool:
    return (
        is_signal(rec)
        and rec.get("signo") != signals.SIGKILL
        and cid_of(rec["target"]) == cid
        and rec.get("scope") not in _OUTSIDE_SCOPES
        and not str(rec.get("code") or "").startswith("CLD_")  # a child's SIGCHLD
    )


# The tree


@dataclass
class Hop:
    item: Item
    result: str  # handled | ignored | blocked | default_killed | failed
    deliver: Item | None = None

    @property
    def sender_pid(self) -> int | None:
        pid: int | None = (self.item.rec.get("sender") or {}).get("pid")
        return pid

    @property
    def target_pid(self) -> int | None:
        pid: int | None = self.item.rec["target"].get("pid")
        return pid


@dataclass
class Node:
    pid: int
    proc: Rec
    state: str = "never_reached"
    ending: str = "running"
    stop_handler: bool | None = None
    ignored_reason: str | None = None  # sig_ign | no_handler, for `ignored`
    end: Item | None = None
    first_hop: Hop | None = None  # the hop that gave it its state
    sent: list[Hop] = field(default_factory=list)

    @property
    def sigkilled(self) -> bool:
        return self.ending in SIGKILLED


@dataclass
class Facts:
    cid: str
    container: Rec | None
    stop_signo: int
    items: list[Item]
    end: Item | None
    dropped: int = 0
    pid1: Rec | None = None
    stop: Item | None = None
    kill: Item | None = None
    unseen_kill: bool = False  # PID 1's exit says SIGKILL, but no SIGKILL to it was seen
    teardown: list[Item] = field(default_factory=list)
    exits: dict[int | None, Item] = field(default_factory=dict)  # by pid (None: unknown)
    oom_victims: dict[int | None, Item] = field(default_factory=dict)
    runtime_killed: set[int] = field(default_factory=set)
    hops: list[Hop] = field(default_factory=list)
    nodes: dict[int, Node] = field(default_factory=dict)

    @property
    def pid1_pid(self) -> int | None:
        return (self.pid1 or {}).get("pid")

    @property
    def pid1_node(self) -> Node | None:
        return self.nodes.get(self.pid1_pid) if self.pid1_pid is not None else None

    @property
    def runtime_kill_came(self) -> bool:
        return self.kill is not None or self.unseen_kill

    def forwards(self) -> list[Hop]:
        """The hops after the stop itself: what the container's processes passed on."""
        return [h for h in self.hops[1:] if h.sender_pid in self.nodes]


def collect(cid: str, stop_signo: int, items: list[Item], end: Item | None, dropped: int) -> Facts:
    items = sorted(items, key=Item.key)
    f = Facts(cid, None, stop_signo, items, end, dropped)
    end_t = end.t if end else None
    for it in items:
        rec = it.rec
        subj = subject(rec) or {}
        if subj.get("container"):
            f.container = subj["container"]
        if subj.get("pid1") and cid_of(subj) == cid:
            f.pid1 = subj
        if rec["type"] == "exit":
            f.exits.setdefault(subj.get("pid"), it)
            if rec.get("oom"):
                f.oom_victims.setdefault(subj.get("pid"), it)
        elif rec["type"] == "oom":
            f.oom_victims.setdefault(subj.get("pid"), it)
        elif rec["type"] == "signal":
            _collect_signal(f, it, end_t)
    if end is not None:
        f.pid1 = end.rec["process"]
    f.unseen_kill = _unseen_kill(f)
    f.runtime_killed = {
        it.rec["target"].get("pid")
        for it in items
        if is_runtime_kill(it.rec, cid) and ended_by_sigkill(f, it.rec["target"])
    }
    if f.stop is not None:
        f.hops = _hops(f)
        f.nodes = _nodes(f)
    return f


def _collect_signal(f: Facts, it: Item, end_t: int | None) -> None:
    rec = it.rec
    before_end = end_t is None or it.t <= end_t
    if f.stop is None and is_stop(rec, f.stop_signo) and before_end:
        f.stop = it
    elif f.kill is None and is_runtime_kill(rec, f.cid) and before_end:
        f.kill = it
    if rec.get("scope") == "pidns_teardown":
        f.teardown.append(it)


def _unseen_kill(f: Facts) -> bool:
    """PID 1 died of a SIGKILL no record shows: the ptrace backend never sees SIGKILL, and
    `--signal` may leave it out. Only an ancestor namespace (the runtime) or the OOM killer can
    SIGKILL an init, so its exit tells that much; when it came is unknown."""
    if f.end is None or f.kill is not None:
        return False
    r = f.end.rec
    pid = r["process"].get("pid")
    if r.get("signal") != "SIGKILL" or r.get("oom") or pid in f.oom_victims:
        return False
    return not any(
        is_signal(it.rec, signals.SIGKILL) and it.rec["target"].get("pid") == pid for it in f.items
    )


def ended_by_sigkill(f: Facts, proc: Rec) -> bool:
    ex = f.exits.get(proc.get("pid"))
    return ex is not None and ex.rec.get("signal") == "SIGKILL"


def _hops(f: Facts) -> list[Hop]:
    assert f.stop is not None
    end_t = f.end.t if f.end else None
    delivers = [it for it in f.items if it.rec["type"] == "deliver"]
    used: set[int] = set()
    out: list[Hop] = []
    for it in f.items:
        if it.t < f.stop.t or (end_t is not None and it.t > end_t):
            continue
        if it is f.stop or (_is_hop(it.rec, f.cid) and it.t > f.stop.t):
            out.append(_hop(it, delivers, used))
    return out


def _hop(it: Item, delivers: list[Item], used: set[int]) -> Hop:
    rec = it.rec
    outcome = rec.get("outcome")
    if outcome == "failed":
        return Hop(it, "failed")
    if outcome == "ignored":
        return Hop(it, "ignored")
    pid, signo = rec["target"].get("pid"), rec.get("signo")
    for i, d in enumerate(delivers):
        r = d.rec
        if i in used or d.t < it.t or r["target"].get("pid") != pid or r.get("signo") != signo:
            continue
        used.add(i)
        return Hop(it, _DELIVER_RESULT.get(str(r.get("action")), "handled"), d)
    if outcome in ("pending", "merged"):
        return Hop(it, "blocked")
    # Delivered and never dequeued by get_signal(): taken by sigtimedwait/signalfd (tini,
    # dumb-init), which is how an init receives what it forwards.
    return Hop(it, "handled")


def _nodes(f: Facts) -> dict[int, Node]:
    assert f.stop is not None
    stop_t = f.stop.t
    seen_before: set[int] = set()
    procs: dict[int, Rec] = {}
    first_seen: dict[int, int] = {}
    for it in f.items:
        for role in ("sender", "target", "process", "victim", "trigger"):
            p = it.rec.get(role) or {}
            pid = p.get("pid")
            if not isinstance(pid, int):
                continue
            if it.t <= stop_t:
                seen_before.add(pid)
            if cid_of(p) == f.cid:
                first_seen.setdefault(pid, it.t)
                if pid not in procs or p.get("cmdline"):
                    procs[pid] = p
    ran_before = _ran_before_stop(f, seen_before)
    exited_before = {pid for pid, it in f.exits.items() if it.t <= stop_t}
    nodes: dict[int, Node] = {}
    for pid, proc in procs.items():
        if pid in exited_before and pid != f.pid1_pid:
            continue
        node = Node(pid, proc)
        _judge_node(f, node)
        alive = first_seen[pid] <= stop_t or ran_before(pid)
        # One that a SIGKILL ended with a handler for the stop signal had work to do, whenever
        # it started: no record may show it before the stop (ptrace sees no `runc kill`).
        had_work = node.ending in SIGKILLED and node.stop_handler is True
        reached = node.first_hop is not None  # a hop of the stop's tree, whenever it started
        if pid == f.pid1_pid or alive or had_work or reached:
            nodes[pid] = node
    return nodes


def _ran_before_stop(f: Facts, seen_before: set[int]) -> Callable[[int], bool]:
    """Whether a host pid was handed out before the stop (see the module's docstring)."""
    high = max(seen_before, default=0)
    fresh = (f.kill.rec.get("sender") or {}).get("pid") if f.kill else None
    if not isinstance(fresh, int) or fresh in seen_before:
        return lambda pid: pid <= high  # no newer pid known: assume no wrap-around
    # `fresh` (the runtime SIGKILL's `runc kill`) is newer than every pid seen up to the stop:
    # those above it were handed out before a wrap-around, so the newest seen is below it.
    newest = max((p for p in seen_before if p <= fresh), default=high)
    if newest <= fresh:
        # pids above `fresh` are from before a wrap that came before the stop, if there was one
        return lambda pid: pid <= newest or (pid > fresh and high > fresh)
    return lambda pid: fresh < pid <= newest  # wrapped between the stop and the SIGKILL


def _judge_node(f: Facts, node: Node) -> None:
    node.sent = [h for h in f.hops if h.sender_pid == node.pid and h.item is not f.stop]
    node.end = f.exits.get(node.pid)
    node.ending = _ending(f, node)
    got = [h for h in f.hops if h.target_pid == node.pid and h.result != "failed"]
    if got:
        best = min(got, key=lambda h: _RESULT_RANK[h.result])
        node.state, node.first_hop = best.result, best
        if node.state == "blocked" and (node.sent or node.ending in ("exited", "signal")):
            node.state = "handled"  # took it after all (sigwait, or unblocked it)
        if node.state == "ignored":
            node.ignored_reason = _ignored_reason(best)
    node.stop_handler = _stop_handler(f, node)


def _ignored_reason(hop: Hop) -> str:
    action = (hop.deliver.rec.get("action") if hop.deliver else None) or ""
    if hop.item.rec.get("reason") == "sig_ign" or action == "ignore":
        return "sig_ign"
    return "no_handler"


def _ending(f: Facts, node: Node) -> str:
    ex = node.end
    if ex is None or (f.stop is not None and ex.t < f.stop.t):
        return "running"
    sig = ex.rec.get("signal")
    if sig != "SIGKILL":
        return "signal" if sig else "exited"
    if node.pid in f.oom_victims:
        return "oom"
    if node.pid in f.runtime_killed or (node.pid == f.pid1_pid and f.unseen_kill):
        return "runtime_kill"
    if any(it.rec["target"].get("pid") == node.pid for it in f.teardown):
        return "teardown"
    return "sigkill"


def _stop_handler(f: Facts, node: Node) -> bool | None:
    name = signals.name(f.stop_signo)
    for it in f.items:
        rec = it.rec
        if is_signal(rec, signals.SIGKILL) and rec["target"].get("pid") == node.pid:
            caught = (rec.get("target_state") or {}).get("caught")
            if isinstance(caught, list):
                return name in caught
    if node.end is not None and isinstance(node.end.rec.get("caught"), list):
        return name in node.end.rec["caught"]
    for it in f.items:
        rec = it.rec
        if rec.get("signo") != f.stop_signo or (rec.get("target") or {}).get("pid") != node.pid:
            continue
        if rec["type"] == "signal":
            handler: str | None = (rec.get("target_state") or {}).get("handler")
            if handler in ("handler", "default", "ignore"):
                return handler == "handler"
        elif rec["type"] == "deliver" and rec.get("action"):
            action: str = rec["action"]
            return action == "handler"
    return None
