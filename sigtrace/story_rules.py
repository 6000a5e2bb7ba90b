"""The verdict of one container stop, judged on its propagation tree (story_tree.py). Pure.

Checked in this order; the first that holds is the verdict, and `culprit` is the process where
the stop signal was lost (or, for slow_shutdown, the one still shutting down):
- no stop signal: `oom_killed` (the OOM killer ended PID 1, or another process of the
  container at most OOM_LINK_S before PID 1 exited), else `killed_without_stop_signal` (a
  runtime SIGKILL, seen or told by PID 1's exit), else no verdict (PID 1 exited by itself).
- `ignored_by_pid1` / `ignored_sig_ign`: PID 1 dropped it (no handler / SIG_IGN).
- `blocked`: PID 1 left it pending until it was SIGKILLed.
- then along the forwards, in time order: a process that got it passed on and ignored it
  (`ignored_sig_ign`) or left it blocked (`blocked`), and was then SIGKILLed or still ran.
- `not_forwarded`: processes alive at the stop that never got it were SIGKILLed, and had a
  handler for it (`stop_handler` true), or it is unknown (null): after a runtime SIGKILL they
  ran through the grace period without it; after PID 1's own exit nothing tells them from a
  child without a handler, so never `graceful` on a guess: the caveat says so.
  `killed_by`: `runtime` when the runtime's SIGKILL came, else `teardown` (PID 1 exited
  first, the wrapper case). The culprit: the process reached last that passed nothing on
  (it handled it, or died of it), else PID 1.
- `slow_shutdown`: a runtime SIGKILL came (to PID 1, or to another process of the container);
  the culprit is a process that handled it and still ran then (preferring one that passed
  nothing on: the app behind an init).
- `graceful`: none of the above.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sigtrace.story_tree import Facts, Node

OOM_LINK_S = 2.0
_NS = 1_000_000_000


@dataclass
class Judgement:
    verdict: str
    culprit: Node | None = None
    killed_by: str | None = None  # not_forwarded: runtime | teardown
    victims: list[Node] = field(default_factory=list)  # who paid: never reached, SIGKILLed
    unsure: list[Node] = field(default_factory=list)  # victims whose handler is unknown
    via: Node | None = None  # who passed it on to the culprit


def judge_facts(f: Facts) -> Judgement | None:
    if f.stop is None:
        if oom_ended_it(f):
            return Judgement("oom_killed")
        if f.runtime_kill_came:
            return Judgement("killed_without_stop_signal")
        return None
    p1 = f.pid1_node
    assert p1 is not None
    if p1.state == "ignored":
        sig_ign = p1.ignored_reason == "sig_ign"
        return Judgement("ignored_sig_ign" if sig_ign else "ignored_by_pid1", p1)
    if p1.state == "blocked":
        return Judgement("blocked", p1)
    return _lost_on_the_way(f) or _unreached(f) or _slow(f) or Judgement("graceful")


def _lost_on_the_way(f: Facts) -> Judgement | None:
    for hop in f.forwards():
        node = f.nodes.get(hop.target_pid) if hop.target_pid is not None else None
        if node is None or node.first_hop is not hop:
            continue
        if not (node.sigkilled or node.ending == "running"):
            continue  # it ended by itself after all
        via = f.nodes.get(hop.sender_pid) if hop.sender_pid is not None else None
        if node.state == "ignored":
            return Judgement("ignored_sig_ign", node, via=via)
        if node.state == "blocked":
            return Judgement("blocked", node, via=via)
    return None


def _unreached(f: Facts) -> Judgement | None:
    lost = [
        n
        for n in f.nodes.values()
        if n.state == "never_reached" and n.sigkilled and n.pid != f.pid1_pid
    ]
    workers = [n for n in lost if n.stop_handler is True]
    unsure = [n for n in lost if n.stop_handler is None]
    if not workers and not unsure:
        return None
    # Where it stopped: a process it reached that passed nothing on (handled it, or died of it).
    quiet = [n for n in f.nodes.values() if n.state in ("handled", "default_killed") and not n.sent]
    reached_last = max(quiet, key=lambda n: n.first_hop.item.t if n.first_hop else 0, default=None)
    by = "runtime" if f.runtime_kill_came else "teardown"
    # After a runtime SIGKILL they ran through the grace period without it, handler or not:
    # only a teardown victim's unknown handler leaves the verdict open.
    open_ = unsure if by == "teardown" and not workers else []
    return Judgement("not_forwarded", reached_last or f.pid1_node, by, workers + unsure, open_)


def _slow(f: Facts) -> Judgement | None:
    if not (f.runtime_kill_came or f.runtime_killed):
        return None
    kill_t = f.kill.t if f.kill else None
    running = [n for n in f.nodes.values() if n.state == "handled" and _ran_until(n, kill_t)]
    quiet = [n for n in running if not n.sent]
    culprit = quiet[0] if quiet else running[0] if running else f.pid1_node
    return Judgement("slow_shutdown", culprit)


def _ran_until(n: Node, kill_t: int | None) -> bool:
    """Still running at the runtime's SIGKILL (at `kill_t`; unseen: ended by a SIGKILL)."""
    if n.ending == "running":
        return True
    return n.sigkilled and (kill_t is None or n.end is None or n.end.t >= kill_t)


def oom_ended_it(f: Facts) -> bool:
    if not f.oom_victims:
        return False
    if f.pid1_pid in f.oom_victims:
        return True
    if f.end is None:
        return False
    last = max(it.t for it in f.oom_victims.values())
    return last <= f.end.t and f.end.t - last <= OOM_LINK_S * _NS
