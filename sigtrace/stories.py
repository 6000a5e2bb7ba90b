"""Termination stories: one `verdict` record each time a container's PID 1 exits after a stop,
a kill or an OOM kill, from the output records alone. Pure.

A story belongs to one container (`container.id` of the signal's target, the delivery's target,
the exiting process, the OOM victim). It starts with the first of:

- the stop signal (the image's STOPSIGNAL from `stop_signals`, else SIGTERM) sent to the
  container's PID 1 (`target.pid1`) by anyone (the runtime from outside, or `docker exec kill`);
- a runtime SIGKILL: SIGKILL to a process of the container from a sender outside it, not the
  namespace teardown (`scope: pidns_teardown`) and not the kernel (`scope: kernel`: OOM);
- an OOM kill of a process of the container (`type: oom`, or `exit.oom`);
- PID 1's exit by SIGKILL (a backend that never sees SIGKILL: ptrace).

It ends when PID 1 exits (`exit` with `process.pid1`). The verdict goes out `settle_s` later
(record time): the teardown SIGKILLs and the last exits follow PID 1's exit record, and records
from different CPUs arrive a few ms out of order. Everything is judged on the story's records
sorted by time, so arrival order within that window does not matter.

The judging is split by job: story_tree.py gathers the facts and follows the stop signal hop by
hop (what the kernel did at each hop, each process's state and ending), story_rules.py gives the
verdict and its culprit, story_text.py the evidence, hint and caveat, verdicts.py the table of
verdicts they all share. wasted_s: for a verdict that wastes the grace period (the table
says which): (kill_at, else PID 1's exit) - stop_at; 0 for the others; null without a stop
signal.

`flush()` (tracing ended) emits the stories in progress that had a stop signal or a runtime
SIGKILL, judged on what was seen so far and marked `"complete": false`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from sigtrace import SCHEMA, signals, story_text, verdicts
from sigtrace.errors import UsageError
from sigtrace.story_fields import (
    Culprit,
    ExitEntry,
    Forward,
    HopEntry,
    ProcessEntry,
    ShortProc,
    Victim,
)
from sigtrace.story_rules import Judgement, judge_facts
from sigtrace.story_tree import (
    SUBJECT_KEY,
    Facts,
    Hop,
    Item,
    Node,
    Rec,
    cid_of,
    collect,
    is_oom,
    is_runtime_kill,
    is_sigkilled_pid1_exit,
    is_stop,
    subject,
)
from sigtrace.timefmt import parse_time

__all__ = ["StoryTracker", "judge", "stop_signal_number"]

SETTLE_S = 1.5  # after PID 1's exit; the correlator may hold a record back up to 1 s
PRE_START_KEEP = 64  # records kept per container before anything starts a story
MAX_ITEMS = 4096  # records kept per story; beyond, later ones are counted, not kept
# A container whose PID 1's exit is never seen (a backend that reports only exits of processes
# in traced signals, a filter) must not be kept for good: with nothing new for this long, a
# story that never started is dropped, and one that started is told as it stands.
IDLE_UNSTARTED_S = 600.0
IDLE_STARTED_S = 3600.0
MAX_LISTED = 32  # entries in `exits`, `forwarded`, `killed_by_teardown`, `hops`, `processes`
_NS = 1_000_000_000


def stop_signal_number(text: str | None) -> int | None:
    """A runtime's stop signal (`SIGUSR1`, `USR1`, `10`) → its number; None if unset or bad."""
    if not text or not text.strip():
        return None
    try:
        sigs = signals.parse_specs([text])
    except UsageError:
        return None
    return next(iter(sigs)) if len(sigs) == 1 else None


@dataclass
class _Story:
    cid: str
    stop_signo: int
    items: list[Item] = field(default_factory=list)
    started: bool = False
    end: Item | None = None  # PID 1's exit
    dropped: int = 0
    last: int = 0  # time of its newest record

    def add(self, item: Item) -> None:
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
        subj = rec.get(SUBJECT_KEY.get(rec.get("type")))  # type: ignore[arg-type]  # subject()
        if not subj or not subj.get("container"):  # no container, no story: most records
            return []
        cid = cid_of(subj)
        if cid is None or not rec.get("time"):
            return []
        item = Item(parse_time(rec["time"]), rec)
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

    def wake_in(self, now: str) -> float | None:
        """Seconds until poll() has a verdict to give or an idle story to drop (None: no story
        is held, nothing to wake for)."""
        if not self._open and not self._ending:
            return None
        due = [s.end.t + self.settle_ns for s in self._ending if s.end]
        due += [
            s.last + int((IDLE_STARTED_S if s.started else IDLE_UNSTARTED_S) * _NS)
            for s in self._open.values()
        ]
        if not due:
            return None
        return max(0.0, (min(due) - max(self._now, parse_time(now))) / _NS)

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

    def _ending_story_for(self, cid: str, item: Item) -> _Story | None:
        """An ended story still takes its late records (teardown, last exits, reordering),
        but not those of a new PID 1 (the container restarted)."""
        for story in self._ending:
            if story.cid != cid or story.end is None:
                continue
            if item.t > story.end.t + self.settle_ns:
                continue
            subj = subject(item.rec) or {}
            if subj.get("pid1") and subj.get("pid") != story.end.rec["process"].get("pid"):
                continue
            return story
        return None

    def _starts(self, story: _Story, rec: Rec) -> bool:
        return (
            is_stop(rec, story.stop_signo)
            or is_runtime_kill(rec, story.cid)
            or is_oom(rec)
            or is_sigkilled_pid1_exit(rec)
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


# Judging one story


def judge(story: _Story, traced: Collection[int] | None = None) -> Rec | None:
    """The verdict record of one story, or None when it is no termination story."""
    if traced is not None and story.stop_signo not in traced and signals.SIGKILL not in traced:
        return None  # neither a stop nor a kill asked for (--signal USR2): no story to tell
    f = collect(story.cid, story.stop_signo, story.items, story.end, story.dropped)
    j = judge_facts(f)
    if j is None:
        return None
    stop_t = f.stop.t if f.stop else None
    kill_t = f.kill.t if f.kill else None
    end_t = f.end.t if f.end else None
    last = f.end or max(f.items, key=Item.key)
    pid1 = f.pid1 or {}
    victims = _teardown_victims(f)
    return {
        "schema": SCHEMA,
        "type": "verdict",
        "time": last.rec["time"],
        "verdict": j.verdict,
        "complete": f.end is not None,
        "container": f.container,
        "pid1": {k: pid1.get(k) for k in ("pid", "comm", "cmdline")},
        "stop_signal": signals.name(f.stop_signo),
        "stop_at": f.stop.rec["time"] if f.stop else None,
        "kill_at": f.kill.rec["time"] if f.kill else None,
        "grace_s": _secs(kill_t, stop_t),
        "wasted_s": _wasted(j.verdict, stop_t, kill_t, end_t),
        "exit_code": f.end.rec.get("exit_code") if f.end else None,
        "culprit": _culprit(j),
        "killed_by": j.killed_by,
        "killed_by_teardown": victims,
        "forwarded": [_forward_entry(h.item) for h in f.forwards()[:MAX_LISTED]],
        "hops": [_hop_entry(h) for h in f.hops[:MAX_LISTED]],
        "processes": _processes(f),
        "exits": _exits(f),
        "evidence": story_text.evidence(f, victims),
        "hint": story_text.hint(f, j, victims),
        "caveat": story_text.caveat(f, j, traced),
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
    if verdicts.wastes_grace(verdict):
        return _secs(kill_t if kill_t is not None else end_t, stop_t)
    return 0.0


def _short(p: Rec) -> ShortProc:
    return {"pid": p.get("pid"), "ns_pid": p.get("ns_pid"), "comm": p.get("comm")}


def _culprit(j: Judgement) -> Culprit | None:
    if j.culprit is None:
        return None
    p = j.culprit.proc
    return {**_short(p), "cmdline": p.get("cmdline"), "pid1": bool(p.get("pid1"))}


def _teardown_victims(f: Facts) -> list[Victim]:
    out: dict[int | None, Victim] = {}
    for it in f.teardown:
        target = it.rec["target"]
        pid = target.get("pid")
        if pid not in out and pid not in f.oom_victims and _ended_by_sigkill(f, pid):
            out[pid] = {"pid": pid, "comm": target.get("comm")}
    return list(out.values())[:MAX_LISTED]


def _ended_by_sigkill(f: Facts, pid: int | None) -> bool:
    ex = f.exits.get(pid) if pid is not None else None
    return ex is not None and ex.rec.get("signal") == "SIGKILL"


def _forward_entry(it: Item) -> Forward:
    r = it.rec
    return {
        "time": r["time"],
        "signal": r.get("signal"),
        "sender": _short(r["sender"]),
        "target": _short(r["target"]),
        "outcome": r.get("outcome"),
    }


def _hop_entry(h: Hop) -> HopEntry:
    r = h.item.rec
    return {
        **_forward_entry(h.item),
        "reason": r.get("reason"),
        "scope": r.get("scope"),
        "action": h.deliver.rec.get("action") if h.deliver else None,
        "result": h.result,
    }


def _processes(f: Facts) -> list[ProcessEntry]:
    """Every process alive at the stop, PID 1 first: what the stop signal did to it."""
    rows = sorted(f.nodes.values(), key=lambda n: (n.pid != f.pid1_pid, n.pid))
    return [_process_entry(n) for n in rows[:MAX_LISTED]]


def _process_entry(n: Node) -> ProcessEntry:
    return {
        **_short(n.proc),
        "cmdline": n.proc.get("cmdline"),
        "state": n.state,
        "ending": n.ending,
        "stop_handler": n.stop_handler,
        "signal": n.first_hop.item.rec.get("signal") if n.first_hop else None,
        "from": _short(n.first_hop.item.rec.get("sender") or {}) if n.first_hop else None,
    }


def _exits(f: Facts) -> list[ExitEntry]:
    """How each process of the story ended, PID 1 first."""
    start_t = min((x.t for x in (f.stop, f.kill) if x is not None), default=None)
    teardown = {it.rec["target"].get("pid") for it in f.teardown}
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
        row: ExitEntry = {
            "pid": pid,
            "comm": p.get("comm"),
            "exit_code": r.get("exit_code"),
            "signal": r.get("signal"),
            "ended_by": by,
        }
        rows.append((pid != f.pid1_pid, it.t, row))
    rows.sort(key=lambda x: (x[0], x[1]))
    return [row for *_, row in rows[:MAX_LISTED]]
