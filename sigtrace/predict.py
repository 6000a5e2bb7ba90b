"""What a stop will do to a running container, predicted from its process tree. Pure.

`sigtrace explain` reads the snapshot (PID 1's cmdline, each process's SigCgt/SigIgn/SigBlk for
the stop signal, whether it waits in sigtimedwait, the tree below PID 1) at the edge; the rules
here follow what the kernel does at `docker stop` (see sigtrace/stories.py for the verdicts):

- PID 1 ignores the stop signal (SIG_IGN): discarded at once → `ignored_sig_ign`.
- PID 1 has no handler, does not block it, does not wait for it: a namespace's init drops it
  (`pid1_no_handler`) → `ignored_by_pid1`; everything is SIGKILLed after the grace period.
- PID 1 waits for signals (sigtimedwait/signalfd, or blocks them; tini, dumb-init do):
  an init that forwards → `graceful`, unless the child it forwards to ignores the signal.
- PID 1 has a handler → `graceful`; less sure when processes below it handle the signal
  themselves (whether the handler passes it on cannot be seen from outside).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sigtrace import signals
from sigtrace.stories import shell_kind

KNOWN_INITS = frozenset({"tini", "docker-init", "dumb-init", "catatonit"})
MAX_NAMED = 4
INIT_FIX = "run an init that forwards signals (`docker run --init`, tini, dumb-init)"


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
    return f"PID 1 (`{p.cmdline or p.comm}`)"


def predict(snap: Snapshot) -> Prediction:
    p1 = snap.pid1
    below = [p for _, p in descendants(p1)]
    if p1.ignored:
        return _ignored(snap, below)
    if p1.caught:
        return _handled(snap, below)
    if p1.sigwait or p1.blocked or p1.comm in KNOWN_INITS:
        return _init(snap)
    return _dropped(snap, below)


def _ignored(snap: Snapshot, below: list[Proc]) -> Prediction:
    sig = signals.name(snap.stop_signal)
    return Prediction(
        "ignored_sig_ign",
        f"{sig} will be discarded: {_pid1_text(snap.pid1)} ignores it (SIG_IGN); "
        f"{_sigkilled(below)}.",
        "high",
        "the kernel discards a signal its target ignores, at once",
        f"Stop ignoring {sig} in PID 1 (`trap '' TERM`, or inherited), or set STOPSIGNAL to a "
        f"signal it handles.",
    )


def _dropped(snap: Snapshot, below: list[Proc]) -> Prediction:
    sig = signals.name(snap.stop_signal)
    p1 = snap.pid1
    kind = shell_kind(p1.cmdline)
    what = "a shell with no handler" if kind else "without a handler"
    summary = f"{sig} will be dropped: {_pid1_text(p1)} is {what}; {_sigkilled(below)}."
    if kind == "script":
        conf = ("medium", "PID 1 is a shell script: a trap or `exec` later would change it")
        hint = f"End the script with `exec server …` so the server becomes PID 1, or {INIT_FIX}."
    elif kind == "command":
        conf = ("high", "a shell running a command string keeps no handler for it")
        hint = f'Use the exec form (ENTRYPOINT ["/path/server", …]) or {INIT_FIX}.'
    else:
        conf = ("high", "the kernel drops signals a namespace's init has no handler for")
        hint = f"Handle {sig} in PID 1, {INIT_FIX}, or set STOPSIGNAL to a signal it handles."
    return Prediction("ignored_by_pid1", summary, conf[0], conf[1], hint)


def _init(snap: Snapshot) -> Prediction:
    sig = signals.name(snap.stop_signal)
    p1 = snap.pid1
    kids = list(p1.children)
    ignoring = [c for c in kids if c.ignored]
    if ignoring:
        return Prediction(
            "ignored_sig_ign",
            f"{_pid1_text(p1)} waits for {sig} and forwards it, but {_named(ignoring)} "
            f"{_verb(ignoring, 'ignores', 'ignore')} it; everything is SIGKILLed after the grace "
            "period.",
            "medium",
            "assumes PID 1 forwards to its child like tini and dumb-init",
            f"Stop ignoring {sig} in {ignoring[0].comm}, or set STOPSIGNAL to a signal it handles.",
        )
    if not (p1.sigwait or p1.comm in KNOWN_INITS):
        return Prediction(
            "not_forwarded",
            f"{sig} will stay pending: {_pid1_text(p1)} blocks it and does not wait for it.",
            "low",
            "PID 1 may unblock it or wait for it later",
            f"Handle {sig} in PID 1, or {INIT_FIX}.",
        )
    orphans = [p for c in kids if not c.caught for _, p in descendants(c)]
    summary = f"{_pid1_text(p1)} waits for {sig} and forwards it to {_named(kids) or 'its child'}."
    if orphans:
        summary += (
            f" Without a handler its child dies at once, and {_named(orphans)} will be SIGKILLed "
            f"by the namespace teardown without getting {sig}."
        )
        return Prediction(
            "graceful",
            summary,
            "low",
            "the child has no handler: what runs below it is not stopped cleanly",
            "Make the server the init's direct child (exec form, `exec` in the wrapper).",
        )
    return Prediction(
        "graceful",
        summary,
        "medium",
        "assumes PID 1 forwards like tini and dumb-init; whether it can is not visible in /proc",
        "Nothing to fix.",
    )


def _handled(snap: Snapshot, below: list[Proc]) -> Prediction:
    sig = signals.name(snap.stop_signal)
    p1 = snap.pid1
    workers = [p for p in below if p.caught]
    summary = f"{sig} will reach the handler of {_pid1_text(p1)}."
    if workers:
        return Prediction(
            "graceful",
            summary + f" Below it, {_named(workers)} {_verb(workers, 'handles', 'handle')} {sig} "
            "too: PID 1 has to pass it on.",
            "low",
            "whether PID 1's handler passes the signal on cannot be seen from outside",
            f"If PID 1 is only a wrapper, `exec` the server instead, or {INIT_FIX}.",
        )
    return Prediction(
        "graceful",
        summary,
        "high",
        "PID 1 handles it; whether it finishes within the grace period is up to the handler",
        "Nothing to fix.",
    )
