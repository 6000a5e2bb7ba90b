"""The words of a verdict record: its evidence lines, its hint (from the verdict table,
sigtrace/verdicts.py) and its caveat. Pure."""

from __future__ import annotations

from collections.abc import Collection

from sigtrace import signals, verdicts
from sigtrace.story_fields import Evidence, Victim
from sigtrace.story_rules import Judgement
from sigtrace.story_tree import Facts, Item, Rec

MAX_EVIDENCE = 10
MAX_NAMED = 4
MAX_CMDLINE = 60
_NS = 1_000_000_000


def name(p: Rec | None) -> str:
    if not p:
        return "?"
    if p.get("pid") is None:  # not known (ptrace: a sender outside the pid namespace)
        return p.get("comm") or "?"
    ns = f" ns:{p['ns_pid']}" if p.get("ns_pid") not in (None, p.get("pid")) else ""
    return f"{p.get('comm') or '?'}({p.get('pid')}{ns})"


def _cmd(p: Rec) -> str:
    text = p.get("cmdline") or p.get("comm") or "?"
    return text if len(text) <= MAX_CMDLINE else text[: MAX_CMDLINE - 1] + "…"


def who(p: Rec | None) -> str:
    """PID 1 by its command line (`PID 1 \\`sh -c …\\``), another process by name and pid."""
    if not p:
        return "PID 1"
    if p.get("pid1"):
        return f"PID 1 `{_cmd(p)}`"
    return name(p)


def named(procs: list[Rec]) -> str:
    names = [name(p) for p in procs[:MAX_NAMED]]
    more = f" and {len(procs) - MAX_NAMED} more" if len(procs) > MAX_NAMED else ""
    return ", ".join(names) + more


def hint(f: Facts, j: Judgement, teardown_victims: list[Victim]) -> str:
    sig = signals.name(f.stop_signo)
    fields: dict[str, object] = {"sig": sig, "short": sig.removeprefix("SIG")}
    culprit = j.culprit.proc if j.culprit else f.pid1
    fields["culprit"] = who(culprit)
    if j.via is not None:
        fields["via"] = f", to which {who(j.via.proc)} passed {sig} on,"
    if j.verdict == "ignored_by_pid1":
        fields["pid1_is"], fields["fix"] = verdicts.pid1_fix((f.pid1 or {}).get("cmdline"), sig)
    elif j.verdict == "not_forwarded":
        victims = named([n.proc for n in j.victims])
        if j.killed_by == "teardown":
            fields["victims"] = (
                f"exits on {sig} without passing it to {victims}, which the namespace teardown "
                "then SIGKILLed"
            )
        else:
            fields["victims"] = (
                f"got {sig} but did not pass it on, so {victims} kept running until SIGKILL"
            )
    elif j.verdict == "slow_shutdown" and f.kill and f.stop:
        fields["grace_text"] = f" after {round((f.kill.t - f.stop.t) / _NS, 3)} s"
    elif j.verdict == "oom_killed":
        procs = [it.rec.get("victim") or it.rec.get("process") for it in f.oom_victims.values()]
        fields["victims"] = named([p for p in procs if p])
    elif j.verdict == "graceful" and teardown_victims:
        names = ", ".join(f"{v['comm']}({v['pid']})" for v in teardown_victims[:MAX_NAMED])
        fields["left"] = (
            f" PID 1 exited while {names} still ran; the namespace teardown SIGKILLed them "
            "(make PID 1 wait for them if they do work)."
        )
    return verdicts.hint(j.verdict, **fields)


def caveat(f: Facts, j: Judgement, traced: Collection[int] | None) -> str | None:
    notes = []
    sig = signals.name(f.stop_signo)
    if traced is not None and f.stop_signo not in traced:
        notes.append(
            f"the stop signal {sig} is not traced (add --signal {sig.removeprefix('SIG')}): "
            f"a stop signal sent before the SIGKILL was not seen"
        )
    if f.unseen_kill:
        notes.append(
            "no SIGKILL was seen (not traced, or this backend cannot see it): PID 1's exit says "
            "one ended it, so when it came (kill_at, grace_s) is unknown"
        )
        if f.end is not None and "oom" in f.end.rec and f.end.rec["oom"] is None:
            notes.append(
                "the container's OOM counter could not be read: this SIGKILL may have been "
                "the OOM killer's"
            )
    if j.unsure:
        notes.append(
            f"whether {named([n.proc for n in j.unsure])} had a {sig} handler is not known "
            "(a recording or backend without `caught`): SIGKILLed without getting it, they "
            "are counted as work lost, not as graceful"
        )
    if f.end is None:
        notes.append("PID 1 had not exited when this was told (tracing ended, or an hour passed)")
    if f.dropped:
        notes.append(f"{f.dropped} later records of this story were not kept")
    return "; ".join(notes) or None


def describe(it: Item) -> str:
    r = it.rec
    kind = r["type"]
    if kind == "signal":
        reason = f" ({r['reason']})" if r.get("reason") else ""
        scope = " [teardown]" if r.get("scope") == "pidns_teardown" else ""
        return (
            f"{r.get('signal')} {name(r.get('sender'))} -> {name(r['target'])} "
            f"{r.get('outcome')}{reason}{scope}"
        )
    if kind == "deliver":
        return f"{r.get('signal')} deliver {name(r['target'])} {r.get('action')}"
    if kind == "exit":
        how = f" by {r['signal']}" if r.get("signal") else ""
        oom = " (OOM)" if r.get("oom") else ""
        return f"exit {name(r['process'])} code {r.get('exit_code')}{how}{oom}"
    return f"OOM victim {name(r.get('victim'))}"


def _ev(it: Item, what: str | None = None) -> Evidence:
    return {"time": it.rec["time"], "type": it.rec["type"], "what": what or describe(it)}


def evidence(f: Facts, teardown_victims: list[Victim]) -> list[Evidence]:
    picked: list[Evidence] = []
    stop_deliver = f.hops[0].deliver if f.hops else None
    forwards = [h.item for h in f.forwards()[:3]]
    for it in (f.stop, stop_deliver, *forwards, f.kill):
        if it is not None:
            picked.append(_ev(it))
    picked += [_ev(it) for it in list(f.oom_victims.values())[:2]]
    if f.end is not None:
        picked.append(_ev(f.end))
    if f.teardown and teardown_victims:
        names = ", ".join(f"{v['comm']}({v['pid']})" for v in teardown_victims[:MAX_NAMED])
        more = f" and {len(teardown_victims) - 4} more" if len(teardown_victims) > 4 else ""
        picked.append(_ev(f.teardown[0], f"teardown SIGKILL ended {names}{more}"))
    picked.sort(key=lambda e: e["time"])
    return picked[:MAX_EVIDENCE]
