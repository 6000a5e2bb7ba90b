"""Termination stories: one `verdict` record each time a container's PID 1 exits after a stop,
a kill or an OOM kill, from the output records alone. Pure.

A story belongs to one container (`container.id` of the signal's target, the delivery's target,
the exiting process, the OOM victim). It starts with the first of:

- the stop signal (the image's STOPSIGNAL from `stop_signals`, else SIGTERM) sent to the
  container's PID 1 (`target.pid1`) by anyone (the runtime from outside, or `docker exec kill`);
- a runtime SIGKILL: SIGKILL to a process of the container from a sender outside it, not the
  namespace teardown (`scope: pidns_teardown`) and not the kernel (`scope: kernel`: OOM);
- an OOM kill of a process of the container (`type: oom`, or `exit.oom`).

It ends when PID 1 exits (`exit` with `process.pid1`). The verdict goes out `settle_s` later
(record time): the teardown SIGKILLs and the last exits follow PID 1's exit record, and records
from different CPUs arrive a few ms out of order. Everything is judged on the story's records
sorted by time, so arrival order within that window does not matter.

Facts the verdicts rest on:
- stop_at: the first stop signal to PID 1. What the kernel did with it (its fate): dropped
  because PID 1 has no handler (`ignored`, `pid1_no_handler` / `default_ignore`, or a later
  `deliver` with `dropped_by_pid1`), dropped because PID 1 set SIG_IGN (`sig_ign`, or `deliver`
  `ignore`), handled (`deliver` with `handler`), or received with no `deliver` record: an init
  (tini, dumb-init) waiting in sigtimedwait/signalfd, which then forwards it itself.
- forwarded: signals sent after stop_at by processes of the container to its other processes
  (PID 1's own kill(), or a `kill` its trap runs), teardown and kernel signals excluded.
- kill_at: the first runtime SIGKILL at or before PID 1's exit; grace_s = kill_at - stop_at.
  A backend that never sees SIGKILL (ptrace) has no such record: PID 1's exit by SIGKILL (not
  an OOM kill, no SIGKILL to it seen) then stands for it, with kill_at and grace_s null and a
  caveat (`unseen_kill`); such an exit also starts a story.
- left_unsignalled: processes other than PID 1 that already ran at stop_at, got no signal after
  it, and were ended by the runtime's or the teardown's SIGKILL (or, with no SIGKILL record for
  them, whose exit says SIGKILL). "Already ran": seen in a record up to stop_at, or a host pid
  handed out before the newest pid seen by then. Pids are handed out in increasing order and
  wrap around at pid_max; `runc kill` is a new process for every signal, so the runtime
  SIGKILL's sender (when no record showed it before the stop) is the newest pid of the story,
  and pids above it were handed out before the last wrap.

Verdicts, checked in this order:
- `oom_killed`: no stop signal, and the OOM killer ended a process of the container (PID 1, or
  another one at most `OOM_LINK_S` before PID 1 exited). OOM SIGKILLs are never grace kills.
- `killed_without_stop_signal`: no stop signal, and a runtime SIGKILL (`docker kill`, `rm -f`),
  seen or told by PID 1's exit.
- (no stop signal, no runtime SIGKILL, no OOM kill: PID 1 exited on its own; no verdict.)
- `ignored_by_pid1`: the kernel dropped the stop signal because PID 1 has no handler for it.
- `ignored_sig_ign`: the kernel dropped it because PID 1 ignores it (SIG_IGN).
- `not_forwarded`: it reached PID 1, the runtime's SIGKILL came, and processes that ran before
  the stop never got a signal (PID 1 did not pass it on).
- `slow_shutdown`: it reached PID 1 (and whatever PID 1 passed it to), but the runtime's SIGKILL
  came before PID 1 exited, or ended a process of the container.
- `graceful`: it reached PID 1, and PID 1 exited before any runtime SIGKILL. The teardown may
  still SIGKILL what PID 1 left behind (listed in `killed_by_teardown`). Never graceful when a
  runtime SIGKILL ended a process of the container.

wasted_s: for the verdicts where the stop signal was lost (ignored_by_pid1, ignored_sig_ign,
not_forwarded): (kill_at, else PID 1's exit) - stop_at, the grace period spent waiting for
nothing; 0 for graceful and slow_shutdown; null without a stop signal.

`flush()` (tracing ended) emits the stories in progress that had a stop signal or a runtime
SIGKILL, judged on what was seen so far and marked `"complete": false`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sigtrace import SCHEMA, signals
from sigtrace.errors import UsageError

Rec = dict[str, Any]

SETTLE_S = 1.5  # after PID 1's exit; the correlator may hold a record back up to 1 s
OOM_LINK_S = 2.0
PRE_START_KEEP = 64  # records kept per container before anything starts a story
MAX_ITEMS = 4096  # records kept per story; beyond, later ones are counted, not kept
# A container whose PID 1's exit is never seen (a backend that reports only exits of processes
# in traced signals, a filter) must not be kept for good: with nothing new for this long, a
# story that never started is dropped, and one that started is told as it stands.
IDLE_UNSTARTED_S = 600.0
IDLE_STARTED_S = 3600.0
MAX_LISTED = 32  # entries in `exits`, `forwarded`, `killed_by_teardown`
MAX_EVIDENCE = 10
SHELLS = frozenset({"sh", "ash", "bash", "dash", "zsh", "ksh", "mksh", "busybox"})
_NS = 1_000_000_000
_OUTSIDE_SCOPES = frozenset({"pidns_teardown", "kernel"})


def parse_time(text: str) -> int:
    """RFC 3339 UTC with up to 9 fraction digits (`…T19:32:11.168131510Z`) → ns since epoch."""
    stamp, _, frac = text.rstrip("Z").partition(".")
    return _epoch_s(stamp) * _NS + int((frac + "000000000")[:9])


@functools.lru_cache(maxsize=256)
def _epoch_s(stamp: str) -> int:
    # Every record is parsed (host-wide, many a second); the seconds part repeats.
    return int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())


def stop_signal_number(text: str | None) -> int | None:
    """A runtime's stop signal (`SIGUSR1`, `USR1`, `10`) → its number; None if unset or bad."""
    if not text or not text.strip():
        return None
    try:
        sigs = signals.parse_specs([text])
    except UsageError:
        return None
    return next(iter(sigs)) if len(sigs) == 1 else None


def _cid(proc: Rec | None) -> str | None:
    c = (proc or {}).get("container")
    return c.get("id") if isinstance(c, dict) else None


def _subject(rec: Rec) -> Rec | None:
    """The process a record is about, whose container the record belongs to."""
    kind = rec.get("type")
    if kind in ("signal", "deliver"):
        return rec.get("target")
    if kind == "exit":
        return rec.get("process")
    if kind == "oom":
        return rec.get("victim")
    return None


def _name(p: Rec | None) -> str:
    if not p:
        return "?"
    if p.get("pid") is None:  # not known (ptrace: a sender outside the pid namespace)
        return p.get("comm") or "?"
    ns = f" ns:{p['ns_pid']}" if p.get("ns_pid") not in (None, p.get("pid")) else ""
    return f"{p.get('comm') or '?'}({p.get('pid')}{ns})"


def _short(p: Rec) -> dict:
    return {"pid": p.get("pid"), "ns_pid": p.get("ns_pid"), "comm": p.get("comm")}


@dataclass
class _Item:
    t: int
    rec: Rec

    def key(self) -> tuple:
        # Ties broken by content, not arrival: shuffled input gives the same story.
        subj = _subject(self.rec) or {}
        return (self.t, str(self.rec.get("type")), subj.get("pid") or 0, self.rec.get("signo") or 0)


@dataclass
class _Story:
    cid: str
    stop_signo: int
    items: list[_Item] = field(default_factory=list)
    started: bool = False
    end: _Item | None = None  # PID 1's exit
    dropped: int = 0
    last: int = 0  # time of its newest record

    def add(self, item: _Item) -> None:
        self.last = max(self.last, item.t)
        if len(self.items) >= MAX_ITEMS:
            self.dropped += 1
            return
        self.items.append(item)
        if not self.started and len(self.items) > PRE_START_KEEP:
            del self.items[: len(self.items) - PRE_START_KEEP]


class StoryTracker:
    def __init__(
        self,
        stop_signals: Mapping[str, int] | None = None,
        traced: Collection[int] | None = None,
        settle_s: float = SETTLE_S,
    ) -> None:
        self.stop_signals = stop_signals if stop_signals is not None else {}
        self.traced = traced
        self.settle_ns = int(settle_s * _NS)
        self._open: dict[str, _Story] = {}
        self._ending: list[_Story] = []
        self._now = 0
        self._idle_check = 0  # when idle open stories were last looked for

    def feed(self, rec: Rec) -> list[Rec]:
        """Verdicts now due (possibly none), after taking in one output record."""
        subj = _subject(rec)
        cid = _cid(subj)
        if subj is None or cid is None or not rec.get("time"):
            return []
        item = _Item(parse_time(rec["time"]), rec)
        self._now = max(self._now, item.t)
        story = self._ending_story_for(cid, item) or self._open_story(cid)
        story.add(item)
        if not story.started and self._starts(story, rec):
            story.started = True
        if story.end is None and rec["type"] == "exit" and subj.get("pid1"):
            story.end = item
            del self._open[cid]
            self._ending.append(story)
        return self._due()

    def poll(self, now: str) -> list[Rec]:
        """Verdicts due by `now` (RFC 3339, the records' clock) when no record came."""
        self._now = max(self._now, parse_time(now))
        return self._due()

    def flush(self) -> list[Rec]:
        """Everything left: ended stories, then stories in progress (`complete: false`)."""
        ending, self._ending = self._ending, []
        open_, self._open = list(self._open.values()), {}
        out = [v for s in sorted(ending, key=_end_time) if (v := judge(s, self.traced))]
        out += [v for s in open_ if s.started and (v := judge(s, self.traced))]
        return out

    def _open_story(self, cid: str) -> _Story:
        story = self._open.get(cid)
        if story is None:
            signo = self.stop_signals.get(cid) or signals.SIGTERM
            story = self._open[cid] = _Story(cid, signo)
        return story

    def _ending_story_for(self, cid: str, item: _Item) -> _Story | None:
        """An ended story still takes its late records (teardown, last exits, reordering),
        but not those of a new PID 1 (the container restarted)."""
        for story in self._ending:
            if story.cid != cid or story.end is None:
                continue
            if item.t > story.end.t + self.settle_ns:
                continue
            subj = _subject(item.rec) or {}
            if subj.get("pid1") and subj.get("pid") != story.end.rec["process"].get("pid"):
                continue
            return story
        return None

    def _starts(self, story: _Story, rec: Rec) -> bool:
        return (
            _is_stop(rec, story.stop_signo)
            or _is_runtime_kill(rec, story.cid)
            or _is_oom(rec)
            or _is_sigkilled_pid1_exit(rec)
        )

    def _due(self) -> list[Rec]:
        out = self._idle()
        due = [s for s in self._ending if s.end and s.end.t + self.settle_ns <= self._now]
        if not due:
            return out
        self._ending = [s for s in self._ending if s not in due]
        return out + [v for s in sorted(due, key=_end_time) if (v := judge(s, self.traced))]

    def _idle(self) -> list[Rec]:
        """Open stories with nothing new for long: unstarted ones go, started ones are told."""
        if self._now - self._idle_check < _NS:  # once a second is enough
            return []
        self._idle_check = self._now
        out: list[Rec] = []
        for cid, s in list(self._open.items()):
            idle_ns = self._now - s.last
            if idle_ns > (IDLE_STARTED_S if s.started else IDLE_UNSTARTED_S) * _NS:
                del self._open[cid]
                if s.started and (v := judge(s, self.traced)):
                    out.append(v)
        return out

    def held(self) -> int:
        """Stories held: open, and ended but not yet told."""
        return len(self._open) + len(self._ending)


def _end_time(story: _Story) -> int:
    return story.end.t if story.end else 0


# Record predicates


def _is_signal(rec: Rec, signo: int | None = None) -> bool:
    return rec.get("type") == "signal" and (signo is None or rec.get("signo") == signo)


def _is_stop(rec: Rec, signo: int) -> bool:
    # STOPSIGNAL SIGKILL gives nothing a chance to stop: judged as a kill, not a stop.
    return (
        signo != signals.SIGKILL
        and _is_signal(rec, signo)
        and bool(rec["target"].get("pid1"))
        and rec.get("outcome") != "failed"
    )


def _is_runtime_kill(rec: Rec, cid: str) -> bool:
    """SIGKILL from outside the container; the teardown's and the OOM killer's are not."""
    return (
        _is_signal(rec, signals.SIGKILL)
        and _cid(rec["target"]) == cid
        and _cid(rec.get("sender")) != cid
        and rec.get("scope") not in _OUTSIDE_SCOPES
        and rec.get("outcome") in ("delivered", "pending", "merged")
    )


def _is_oom(rec: Rec) -> bool:
    return rec.get("type") == "oom" or (rec.get("type") == "exit" and bool(rec.get("oom")))


def _is_sigkilled_pid1_exit(rec: Rec) -> bool:
    # A backend that never sees SIGKILL (ptrace) still sees the exit it causes.
    return (
        rec.get("type") == "exit"
        and bool(rec["process"].get("pid1"))
        and rec.get("signal") == "SIGKILL"
    )


# Judging one story


@dataclass
class _Facts:
    cid: str
    container: Rec | None
    stop_signo: int
    items: list[_Item]
    end: _Item | None
    dropped: int = 0
    pid1: Rec | None = None
    stop: _Item | None = None
    fate: str | None = None  # dropped_pid1 | dropped_sig_ign | handled | received
    deliver: _Item | None = None
    kill: _Item | None = None
    unseen_kill: bool = False  # PID 1's exit says SIGKILL, but no SIGKILL to it was seen
    forwarded: list[_Item] = field(default_factory=list)
    teardown: list[_Item] = field(default_factory=list)
    exits: dict[int, _Item] = field(default_factory=dict)
    oom_victims: dict[int, _Item] = field(default_factory=dict)
    runtime_killed: set[int] = field(default_factory=set)
    left_unsignalled: list[Rec] = field(default_factory=list)


def _collect(story: _Story) -> _Facts:
    items = sorted(story.items, key=_Item.key)
    f = _Facts(story.cid, None, story.stop_signo, items, story.end, story.dropped)
    end_t = story.end.t if story.end else None
    for it in items:
        rec = it.rec
        subj = _subject(rec) or {}
        if subj.get("container"):
            f.container = subj["container"]
        if subj.get("pid1") and _cid(subj) == story.cid:
            f.pid1 = subj
        if rec["type"] == "exit":
            f.exits.setdefault(subj.get("pid"), it)
            if rec.get("oom"):
                f.oom_victims.setdefault(subj.get("pid"), it)
        elif rec["type"] == "oom":
            f.oom_victims.setdefault(subj.get("pid"), it)
        elif rec["type"] == "signal":
            _collect_signal(f, it, end_t)
    if story.end is not None:
        f.pid1 = story.end.rec["process"]
    f.fate, f.deliver = _fate(f)
    f.unseen_kill = _unseen_kill(f)
    f.runtime_killed = {
        it.rec["target"].get("pid")
        for it in items
        if _is_runtime_kill(it.rec, story.cid) and _ended_by_sigkill(f, it.rec["target"])
    }
    f.left_unsignalled = _left_unsignalled(f)
    return f


def _collect_signal(f: _Facts, it: _Item, end_t: int | None) -> None:
    rec = it.rec
    before_end = end_t is None or it.t <= end_t
    if f.stop is None and _is_stop(rec, f.stop_signo) and before_end:
        f.stop = it
    elif f.kill is None and _is_runtime_kill(rec, f.cid) and before_end:
        f.kill = it
    if rec.get("scope") == "pidns_teardown":
        f.teardown.append(it)
    elif f.stop is not None and it.t > f.stop.t and before_end and _is_forward(rec, f.cid):
        f.forwarded.append(it)


def _is_forward(rec: Rec, cid: str) -> bool:
    return (
        _cid(rec.get("sender")) == cid
        and _cid(rec["target"]) == cid
        and not rec["target"].get("pid1")
        and rec.get("scope") not in _OUTSIDE_SCOPES
    )


def _fate(f: _Facts) -> tuple[str | None, _Item | None]:
    """What became of the stop signal at PID 1."""
    if f.stop is None:
        return None, None
    rec = f.stop.rec
    if rec.get("outcome") == "ignored":
        return ("dropped_sig_ign" if rec.get("reason") == "sig_ign" else "dropped_pid1"), None
    pid = rec["target"].get("pid")
    for it in f.items:
        r = it.rec
        if (
            it.t >= f.stop.t
            and r["type"] == "deliver"
            and r.get("signo") == f.stop_signo
            and r["target"].get("pid") == pid
        ):
            action = r.get("action")
            if action == "ignore":
                return "dropped_sig_ign", it
            if action in ("dropped_by_pid1", "default_ignore"):
                return "dropped_pid1", it
            return "handled", it
    return "received", None


def _unseen_kill(f: _Facts) -> bool:
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
        _is_signal(it.rec, signals.SIGKILL) and it.rec["target"].get("pid") == pid for it in f.items
    )


def _ended_by_sigkill(f: _Facts, proc: Rec) -> bool:
    ex = f.exits.get(proc.get("pid"))
    return ex is not None and ex.rec.get("signal") == "SIGKILL"


def _ran_before_stop(f: _Facts, seen_before: set[int]) -> Callable[[int], bool]:
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


def _left_unsignalled(f: _Facts) -> list[Rec]:
    if f.stop is None:
        return []
    stop_t = f.stop.t
    seen_before: set[int] = set()
    for it in f.items:
        if it.t > stop_t:
            break
        for role in ("sender", "target", "process", "victim", "trigger"):
            pid = (it.rec.get(role) or {}).get("pid")
            if isinstance(pid, int):
                seen_before.add(pid)
    ran_before = _ran_before_stop(f, seen_before)
    pid1 = (f.pid1 or {}).get("pid")
    # Got the signal one way or another: passed on from inside, or sent to it directly.
    signalled = {it.rec["target"].get("pid") for it in f.forwarded}
    signalled |= {
        it.rec["target"].get("pid")
        for it in f.items
        if it.t > stop_t and _is_signal(it.rec) and it.rec.get("signo") != signals.SIGKILL
    }
    sigkilled = {
        it.rec["target"].get("pid") for it in f.items if _is_signal(it.rec, signals.SIGKILL)
    }
    out: dict[int, Rec] = {}
    for it in f.items:
        rec = it.rec
        if it.t <= stop_t:
            continue
        if _is_signal(rec, signals.SIGKILL):
            if rec.get("scope") != "pidns_teardown" and not _is_runtime_kill(rec, f.cid):
                continue
            target = rec["target"]
        elif rec["type"] == "exit" and rec.get("signal") == "SIGKILL" and not rec.get("oom"):
            target = rec["process"]  # a SIGKILL no record shows (ptrace): its exit says so
            if target.get("pid") in sigkilled:
                continue
        else:
            continue
        pid = target.get("pid")
        if pid == pid1 or pid in signalled or pid in f.oom_victims or pid in out:
            continue
        if pid in seen_before or (isinstance(pid, int) and ran_before(pid)):
            out[pid] = target
    return list(out.values())


def _verdict(f: _Facts) -> str | None:
    if f.stop is None:
        if _oom_ended_it(f):
            return "oom_killed"
        if f.kill is not None or f.unseen_kill:
            return "killed_without_stop_signal"
        return None
    if f.fate == "dropped_pid1":
        return "ignored_by_pid1"
    if f.fate == "dropped_sig_ign":
        return "ignored_sig_ign"
    if f.kill is not None or f.unseen_kill:
        return "not_forwarded" if f.left_unsignalled else "slow_shutdown"
    if f.runtime_killed:
        return "slow_shutdown"
    return "graceful"


def _oom_ended_it(f: _Facts) -> bool:
    if not f.oom_victims:
        return False
    pid1 = (f.pid1 or {}).get("pid")
    if pid1 in f.oom_victims:
        return True
    if f.end is None:
        return False
    last = max(it.t for it in f.oom_victims.values())
    return last <= f.end.t and f.end.t - last <= OOM_LINK_S * _NS


def judge(story: _Story, traced: Collection[int] | None = None) -> Rec | None:
    """The verdict record of one story, or None when it is no termination story."""
    if traced is not None and story.stop_signo not in traced and signals.SIGKILL not in traced:
        return None  # neither a stop nor a kill asked for (--signal USR2): no story to tell
    f = _collect(story)
    verdict = _verdict(f)
    if verdict is None:
        return None
    stop_t = f.stop.t if f.stop else None
    kill_t = f.kill.t if f.kill else None
    end_t = f.end.t if f.end else None
    last = f.end or max(f.items, key=_Item.key)
    pid1 = f.pid1 or {}
    return {
        "schema": SCHEMA,
        "type": "verdict",
        "time": last.rec["time"],
        "verdict": verdict,
        "complete": f.end is not None,
        "container": f.container,
        "pid1": {k: pid1.get(k) for k in ("pid", "comm", "cmdline")},
        "stop_signal": signals.name(f.stop_signo),
        "stop_at": f.stop.rec["time"] if f.stop else None,
        "kill_at": f.kill.rec["time"] if f.kill else None,
        "grace_s": _secs(kill_t, stop_t),
        "wasted_s": _wasted(verdict, stop_t, kill_t, end_t),
        "exit_code": f.end.rec.get("exit_code") if f.end else None,
        "killed_by_teardown": _teardown_victims(f),
        "forwarded": [_forward_entry(it) for it in f.forwarded[:MAX_LISTED]],
        "exits": _exits(f),
        "evidence": _evidence(f),
        "hint": _hint(verdict, f),
        "caveat": _caveat(f, traced),
    }


def _secs(later: int | None, earlier: int | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier) / _NS, 3)


def _wasted(
    verdict: str, stop_t: int | None, kill_t: int | None, end_t: int | None
) -> float | None:
    if stop_t is None:
        return None
    if verdict in ("ignored_by_pid1", "ignored_sig_ign", "not_forwarded"):
        return _secs(kill_t if kill_t is not None else end_t, stop_t)
    return 0.0


def _teardown_victims(f: _Facts) -> list[dict]:
    out: dict[int, dict] = {}
    for it in f.teardown:
        target = it.rec["target"]
        pid = target.get("pid")
        if pid not in out and pid not in f.oom_victims and _ended_by_sigkill(f, target):
            out[pid] = {"pid": pid, "comm": target.get("comm")}
    return list(out.values())[:MAX_LISTED]


def _forward_entry(it: _Item) -> dict:
    r = it.rec
    return {
        "time": r["time"],
        "signal": r.get("signal"),
        "sender": _short(r["sender"]),
        "target": _short(r["target"]),
        "outcome": r.get("outcome"),
    }


def _exits(f: _Facts) -> list[dict]:
    """How each process of the story ended, PID 1 first."""
    start_t = min((x.t for x in (f.stop, f.kill) if x is not None), default=None)
    teardown = {it.rec["target"].get("pid") for it in f.teardown}
    pid1 = (f.pid1 or {}).get("pid")
    rows = []
    for pid, it in f.exits.items():
        if start_t is not None and it.t < start_t:
            continue
        r = it.rec
        if pid in f.oom_victims:
            by = "oom"
        elif r.get("signal") == "SIGKILL" and pid in f.runtime_killed:
            by = "runtime_kill"
        elif r.get("signal") == "SIGKILL" and pid in teardown:
            by = "teardown"
        elif r.get("signal"):
            by = "signal"
        else:
            by = "exit"
        p = r["process"]
        row = {"pid": pid, "comm": p.get("comm"), "exit_code": r.get("exit_code")}
        rows.append((pid != pid1, it.t, {**row, "signal": r.get("signal"), "ended_by": by}))
    rows.sort(key=lambda x: (x[0], x[1]))
    return [row for *_, row in rows[:MAX_LISTED]]


def _describe(it: _Item) -> str:
    r = it.rec
    kind = r["type"]
    if kind == "signal":
        reason = f" ({r['reason']})" if r.get("reason") else ""
        scope = " [teardown]" if r.get("scope") == "pidns_teardown" else ""
        return (
            f"{r.get('signal')} {_name(r.get('sender'))} -> {_name(r['target'])} "
            f"{r.get('outcome')}{reason}{scope}"
        )
    if kind == "deliver":
        return f"{r.get('signal')} deliver {_name(r['target'])} {r.get('action')}"
    if kind == "exit":
        how = f" by {r['signal']}" if r.get("signal") else ""
        oom = " (OOM)" if r.get("oom") else ""
        return f"exit {_name(r['process'])} code {r.get('exit_code')}{how}{oom}"
    return f"OOM victim {_name(r.get('victim'))}"


def _ev(it: _Item, what: str | None = None) -> dict:
    return {"time": it.rec["time"], "type": it.rec["type"], "what": what or _describe(it)}


def _evidence(f: _Facts) -> list[dict]:
    picked: list[dict] = []
    for it in (f.stop, f.deliver, *f.forwarded[:3], f.kill):
        if it is not None:
            picked.append(_ev(it))
    picked += [_ev(it) for it in list(f.oom_victims.values())[:2]]
    if f.end is not None:
        picked.append(_ev(f.end))
    victims = _teardown_victims(f)
    if f.teardown and victims:
        names = ", ".join(f"{v['comm']}({v['pid']})" for v in victims[:4])
        more = f" and {len(victims) - 4} more" if len(victims) > 4 else ""
        picked.append(_ev(f.teardown[0], f"teardown SIGKILL ended {names}{more}"))
    picked.sort(key=lambda e: e["time"])
    return picked[:MAX_EVIDENCE]


# The fix


def shell_kind(cmdline: str | None) -> str | None:
    """'command' for `sh -c …` (shell-form ENTRYPOINT/CMD), 'script' for `sh x.sh`, else None."""
    words = (cmdline or "").split()
    if not words or words[0].rsplit("/", 1)[-1] not in SHELLS:
        return None
    return "command" if "-c" in words[1:3] else "script"


def _procs(rows: list[Rec]) -> str:
    names = [_name(p) for p in rows[:4]]
    more = f" and {len(rows) - 4} more" if len(rows) > 4 else ""
    return ", ".join(names) + more


def _hint(verdict: str, f: _Facts) -> str:
    sig = signals.name(f.stop_signo)
    pid1 = f.pid1 or {}
    who = f"PID 1 ({pid1.get('comm') or '?'})"
    init = "run an init that forwards signals (`docker run --init`, tini, dumb-init)"
    if verdict == "ignored_by_pid1":
        kind = shell_kind(pid1.get("cmdline"))
        if kind == "command":
            return (
                f"PID 1 is a shell (`{pid1.get('cmdline')}`) with no {sig} handler, so the kernel "
                f'drops {sig}: use the exec form (ENTRYPOINT ["/path/server", …]) or `exec` the '
                f"server in the command, or {init}."
            )
        if kind == "script":
            return (
                f"PID 1 is a shell script (`{pid1.get('cmdline')}`) with no {sig} handler, so the "
                f"kernel drops {sig}: end it with `exec server …` so the server becomes PID 1, "
                f"or {init}."
            )
        return (
            f"{who} has no {sig} handler, and the kernel drops such signals for a namespace's "
            f"init: handle {sig} in it, {init}, or set STOPSIGNAL to a signal it handles."
        )
    if verdict == "ignored_sig_ign":
        return (
            f"{who} ignores {sig} (SIG_IGN: `trap '' TERM`, or inherited from what started it): "
            f"stop ignoring it, or set STOPSIGNAL to a signal it handles."
        )
    if verdict == "not_forwarded":
        return (
            f"{who} got {sig} but did not pass it on, so {_procs(f.left_unsignalled)} kept "
            f"running until SIGKILL: make the server PID 1 (exec form, or `exec` in the "
            f'wrapper), {init}, or forward it in the trap (`kill -TERM "$child"; wait`).'
        )
    if verdict == "slow_shutdown":
        grace = f" after {_secs(f.kill.t, f.stop.t)} s" if f.kill and f.stop else ""
        return (
            f"{sig} got through, but the container was still shutting down when SIGKILL came"
            f"{grace}: give it longer (`docker stop -t`, compose `stop_grace_period`, Kubernetes "
            f"`terminationGracePeriodSeconds`) or make the shutdown faster."
        )
    if verdict == "killed_without_stop_signal":
        return (
            f"The runtime sent SIGKILL with no {sig} first (`docker kill`, `docker rm -f`, or a "
            f"grace period of 0), so nothing could shut down cleanly: stop it with `docker stop` "
            f"or a grace period above 0."
        )
    if verdict == "oom_killed":
        victims = [it.rec.get("victim") or it.rec.get("process") for it in f.oom_victims.values()]
        return (
            f"The kernel's OOM killer ended {_procs([v for v in victims if v])} at the "
            f"container's memory limit; this was no stop: raise the limit (`docker run --memory`, "
            f"Kubernetes `resources.limits.memory`) or use less memory."
        )
    left = _teardown_victims(f)
    if left:
        names = ", ".join(f"{v['comm']}({v['pid']})" for v in left[:4])
        return (
            f"Nothing to fix. PID 1 exited while {names} still ran; the namespace teardown "
            f"SIGKILLed them (make PID 1 wait for them if they do work)."
        )
    return "Nothing to fix."


def _caveat(f: _Facts, traced: Collection[int] | None) -> str | None:
    notes = []
    if traced is not None and f.stop_signo not in traced:
        short = signals.name(f.stop_signo).removeprefix("SIG")
        notes.append(
            f"the stop signal {signals.name(f.stop_signo)} is not traced (add --signal {short}): "
            f"a stop signal sent before the SIGKILL was not seen"
        )
    if f.unseen_kill:
        notes.append(
            "no SIGKILL was seen (not traced, or this backend cannot see it): PID 1's exit says "
            "one ended it, so when it came (kill_at, grace_s) is unknown"
        )
    if f.end is None:
        notes.append("PID 1 had not exited when this was told (tracing ended, or an hour passed)")
    if f.dropped:
        notes.append(f"{f.dropped} later records of this story were not kept")
    return "; ".join(notes) or None
