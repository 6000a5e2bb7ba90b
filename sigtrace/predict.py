"""What a stop will do to a running container, predicted from its process tree. Pure.

`sigtrace explain` reads the snapshot (PID 1's cmdline, each process's SigCgt/SigIgn/SigBlk for
the stop signal, whether it waits in sigtimedwait, the tree below PID 1) at the edge; the rules
here follow what the kernel does at `docker stop`, hop by hop as the stories judge it
(sigtrace/story_rules.py; verdicts, texts and hints from sigtrace/verdicts.py):

- PID 1 ignores the stop signal (SIG_IGN): discarded at once → `ignored_sig_ign`.
- PID 1 has no handler, does not block it, does not wait for it: a namespace's init drops it
  (`pid1_no_handler`) → `ignored_by_pid1`; everything is SIGKILLed after the grace period.
- PID 1 waits for signals (sigtimedwait; tini, dumb-init): an init that forwards to its child →
  `ignored_sig_ign` when that child ignores it; `not_forwarded` when the child has no handler
  (it dies at once) while processes below it handle it (the teardown SIGKILLs them);
  else `graceful`.
- PID 1 blocks it and does not wait in sigtimedwait → `blocked`, low confidence: a signalfd
  reader blocks it too, and a mask read at one moment may be a brief one.
- PID 1 has a handler → `graceful`; when processes below it handle the signal too, whether
  PID 1 passes it on cannot be seen from outside: a shell (whose traps seldom do) →
  `not_forwarded`, another program → `graceful`, both with low confidence.

A low-confidence prediction is no answer for a CI gate: `sigtrace explain` exits 12 for it,
whatever it expects (see `exit_code`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sigtrace import signals, verdicts
from sigtrace.verdicts import pid1_fix, shell_kind

KNOWN_INITS = frozenset({"tini", "docker-init", "dumb-init", "catatonit"})
MAX_NAMED = 4
EXIT_GRACEFUL = 0
EXIT_NOT_GRACEFUL = 10
EXIT_UNSURE = 12


@dataclass(frozen=True)
class Proc:
    pid: int
    comm: str
    ns_pid: int | None = None
    cmdline: str | None = None
    caught: bool = False  # the stop signal is in SigCgt: a handler
    ignored: bool = False  # in SigIgn
    blocked: bool = False  # in SigBlk
    sigwait: bool = False  # sleeping in sigtimedwait (tini, dumb-init); SigBlk is clear then
    children: tuple[Proc, ...] = ()

    def handling(self) -> str:
        """handler | ignored | waits | blocked | default, for the stop signal."""
        if self.ignored:
            return "ignored"
        if self.caught:
            return "handler"
        if self.sigwait:
            return "waits"
        return "blocked" if self.blocked else "default"


@dataclass(frozen=True)
class Snapshot:
    stop_signal: int
    pid1: Proc


@dataclass(frozen=True)
class Prediction:
    expect: str  # a verdict of sigtrace/stories.py
    summary: str
    confidence: str  # high | medium | low
    confidence_reason: str
    hint: str

    @property
    def graceful(self) -> bool:
        return self.expect == "graceful"

    @property
    def exit_code(self) -> int:
        """0 graceful, 10 not, 12 when the prediction is not sure enough to gate on."""
        if self.confidence == "low":
            return EXIT_UNSURE
        return EXIT_GRACEFUL if self.graceful else EXIT_NOT_GRACEFUL


def descendants(p: Proc, depth: int = 1) -> Iterator[tuple[int, Proc]]:
    for child in p.children:
        yield depth, child
        yield from descendants(child, depth + 1)


def label(p: Proc) -> str:
    ns = f" ns:{p.ns_pid}" if p.ns_pid not in (None, p.pid) else ""
    return f"{p.comm} (pid {p.pid}{ns})"


def _named(procs: list[Proc]) -> str:
    names = ", ".join(label(p) for p in procs[:MAX_NAMED])
    more = f" and {len(procs) - MAX_NAMED} more" if len(procs) > MAX_NAMED else ""
    return names + more


def _verb(procs: list[Proc], one: str, many: str) -> str:
    return one if len(procs) == 1 else many


def _sigkilled(procs: list[Proc]) -> str:
    if not procs:
        return "PID 1 will be SIGKILLed after the grace period"
    return f"{_named(procs)} {_verb(procs, 'is', 'are')} SIGKILLed with it after the grace period"


def _pid1_text(p: Proc) -> str:
    return f"PID 1 `{p.cmdline or p.comm}`"


def _fields(snap: Snapshot, culprit: Proc | None = None) -> dict[str, str]:
    sig = signals.name(snap.stop_signal)
    who = _pid1_text(snap.pid1) if culprit is None or culprit is snap.pid1 else label(culprit)
    return {"sig": sig, "short": sig.removeprefix("SIG"), "culprit": who}


def predict(snap: Snapshot) -> Prediction:
    p1 = snap.pid1
    below = [p for _, p in descendants(p1)]
    if p1.ignored:
        return _ignored(snap, below)
    if p1.caught:
        return _handled(snap, below)
    if p1.sigwait or p1.comm in KNOWN_INITS:
        return _init(snap)
    if p1.blocked:
        return _blocked(snap, below)
    return _dropped(snap, below)


def _ignored(snap: Snapshot, below: list[Proc]) -> Prediction:
    what = "will be discarded: {pid1} ignores it (SIG_IGN)"
    why = "the kernel discards a signal its target ignores, at once"
    return _pid1_keeps_it(snap, below, "ignored_sig_ign", what, "high", why)


def _blocked(snap: Snapshot, below: list[Proc]) -> Prediction:
    what = "will stay pending: {pid1} blocks it and does not wait for it"
    why = "SigBlk is one moment's mask: a signalfd reader blocks it too, and a brief block ends"
    return _pid1_keeps_it(snap, below, "blocked", what, "low", why)


def _pid1_keeps_it(
    snap: Snapshot, below: list[Proc], expect: str, what: str, confidence: str, why: str
) -> Prediction:
    """PID 1 keeps the stop signal from everything below it, which is SIGKILLed in the end."""
    sig = signals.name(snap.stop_signal)
    summary = f"{sig} {what.format(pid1=_pid1_text(snap.pid1))}; {_sigkilled(below)}."
    return Prediction(expect, summary, confidence, why, verdicts.hint(expect, **_fields(snap)))


def _dropped(snap: Snapshot, below: list[Proc]) -> Prediction:
    sig = signals.name(snap.stop_signal)
    p1 = snap.pid1
    kind = shell_kind(p1.cmdline)
    what = "a shell with no handler" if kind else "without a handler"
    summary = f"{sig} will be dropped: {_pid1_text(p1)} is {what}; {_sigkilled(below)}."
    if kind == "script":
        conf = ("medium", "PID 1 is a shell script: a trap or `exec` later would change it")
    elif kind == "command":
        conf = ("high", "a shell running a command string keeps no handler for it")
    else:
        conf = ("high", "the kernel drops signals a namespace's init has no handler for")
    pid1_is, fix = pid1_fix(p1.cmdline, sig)
    hint = verdicts.hint("ignored_by_pid1", sig=sig, pid1_is=pid1_is, fix=fix)
    return Prediction("ignored_by_pid1", summary, conf[0], conf[1], hint)


def _init(snap: Snapshot) -> Prediction:
    sig = signals.name(snap.stop_signal)
    p1 = snap.pid1
    kids = list(p1.children)
    ignoring = [c for c in kids if c.ignored]
    if ignoring:
        via = f", to which {_pid1_text(p1)} passes {sig} on,"
        return Prediction(
            "ignored_sig_ign",
            f"{_pid1_text(p1)} waits for {sig} and forwards it, but {_named(ignoring)} "
            f"{_verb(ignoring, 'ignores', 'ignore')} it; everything is SIGKILLed after the grace "
            "period.",
            "medium",
            "assumes PID 1 forwards to its child like tini and dumb-init",
            verdicts.hint("ignored_sig_ign", **_fields(snap, ignoring[0]), via=via),
        )
    summary = f"{_pid1_text(p1)} waits for {sig} and forwards it to {_named(kids) or 'its child'}."
    orphans = [p for c in kids if not c.caught for _, p in descendants(c)]
    workers = [p for p in orphans if p.caught]
    if workers:
        dies = [c for c in kids if not c.caught]
        victims = (
            f"passes {sig} on to {_named(dies)}, which {_verb(dies, 'has', 'have')} no handler "
            f"and {_verb(dies, 'dies', 'die')} of it without passing it to {_named(workers)}, "
            "which the namespace teardown then SIGKILLs"
        )
        return Prediction(
            "not_forwarded",
            summary + f" Without a handler its child dies at once, and {_named(workers)} "
            f"(which {_verb(workers, 'handles', 'handle')} {sig}) will be SIGKILLed by the "
            f"namespace teardown without getting it.",
            "medium",
            "assumes PID 1 forwards to its child only, like tini and dumb-init without -g",
            verdicts.hint("not_forwarded", **_fields(snap), victims=victims),
        )
    return Prediction(
        "graceful",
        summary,
        "medium",
        "assumes PID 1 forwards like tini and dumb-init; whether it can is not visible in /proc",
        verdicts.hint("graceful"),
    )


def _handled(snap: Snapshot, below: list[Proc]) -> Prediction:
    sig = signals.name(snap.stop_signal)
    p1 = snap.pid1
    workers = [p for p in below if p.caught]
    summary = f"{sig} will reach the handler of {_pid1_text(p1)}."
    if not workers:
        return Prediction(
            "graceful",
            summary,
            "high",
            "PID 1 handles it; whether it finishes within the grace period is up to the handler",
            verdicts.hint("graceful"),
        )
    summary += (
        f" Below it, {_named(workers)} {_verb(workers, 'handles', 'handle')} {sig} too: unless "
        "PID 1 passes it on and waits for them, they will be SIGKILLed."
    )
    why = "whether PID 1's handler passes the signal on cannot be seen from outside"
    if shell_kind(p1.cmdline):
        victims = f"may exit on {sig} without passing it to {_named(workers)}"
        hint = verdicts.hint("not_forwarded", **_fields(snap), victims=victims)
        return Prediction(
            "not_forwarded", summary, "low", why + "; a shell's trap seldom does", hint
        )
    hint = f"If PID 1 is only a wrapper, `exec` the server instead, or {verdicts.INIT_FIX}."
    return Prediction("graceful", summary, "low", why, hint)
