"""The one table of termination verdicts: each one's name, whether it wastes the grace period,
its one-line text (text output), its meaning (the README's table) and its hint template.
stories.py (what happened), predict.py (what will happen), output/text.py and metrics.py all
read it, and the {pid1_is} / {fix} words (`pid1_fix`) that stories and predictions share;
tests/unit/test_verdicts.py fails when a verdict lacks an entry or when the README's table
differs from `readme_table()`. Pure.

Placeholders a template may use (`render` fills the ones it is given, `?` for the rest):
  line:  {sig} stop signal, {wasted} and {grace} s, {code} PID 1's exit code, {culprit}
  hint:  {sig} (`SIGQUIT`), {short} (`QUIT`), {culprit} (who lost it), {victims} (who paid
         for it), {pid1_is} / {fix} (how PID 1 runs, and so what to change), {init},
         {grace_text}, {left} (what the teardown ended), {via} (who passed it on),
         {hook} / {period} / {window} (prestop_ate_grace: the grace budget, sigtrace/kubegrace.py)
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

INIT_FIX = "run an init that forwards signals (`docker run --init`, tini, dumb-init)"
GRACE_FIX = (
    "give it longer (`docker stop -t`, compose `stop_grace_period`, Kubernetes "
    "`terminationGracePeriodSeconds`) or make the shutdown faster"
)
SHELLS = frozenset({"sh", "ash", "bash", "dash", "zsh", "ksh", "mksh", "busybox"})


@dataclass(frozen=True)
class Verdict:
    name: str
    wastes_grace: bool  # wasted_s counts the grace period spent after the stop signal was lost
    line: str  # the text output's verdict line
    meaning: str  # the README's table
    hint: str  # the fix
    event: str = ""  # a Kubernetes Event's reason (`sigtrace daemon --k8s-events`); {Sig}: Sigterm


_TABLE = (
    Verdict(
        "graceful",
        False,
        "stopped on {sig} within the grace period, exit {code}",
        "every process that handles the stop signal got it (from the runtime, or passed on), "
        "and none of them died by SIGKILL",
        "Nothing to fix.{left}",
        event="StoppedGracefully",
    ),
    Verdict(
        "ignored_by_pid1",
        True,
        "{sig} dropped: PID 1 has no handler; {wasted} s wasted, exit {code}",
        "the kernel dropped the stop signal: PID 1 has no handler for it",
        "{pid1_is} no {sig} handler, so the kernel drops {sig} (a namespace's init has no "
        "default action): {fix}",
        event="{Sig}IgnoredByPID1",
    ),
    Verdict(
        "ignored_sig_ign",
        True,
        "{sig} discarded: {culprit} ignores it; {wasted} s wasted, exit {code}",
        "the kernel discarded it: the process it reached ignores it (SIG_IGN), PID 1 or one "
        "it was passed on to (`culprit`)",
        "{culprit}{via} ignores {sig} (SIG_IGN: `trap '' {short}`, or inherited from what "
        "started it): stop ignoring it, or set STOPSIGNAL to a signal it handles.",
        event="{Sig}Ignored",
    ),
    Verdict(
        "blocked",
        True,
        "{sig} left pending: {culprit} blocks it; {wasted} s wasted, exit {code}",
        "the stop signal stayed pending in a process that blocks it (PID 1, or one it was "
        "passed on to) until SIGKILL",
        "{culprit}{via} blocks {sig} (sigprocmask) and never took it, so it stayed pending "
        "until SIGKILL: unblock it, or wait for it (sigwait, signalfd) and shut down, or {init}.",
        event="{Sig}Blocked",
    ),
    Verdict(
        "not_forwarded",
        True,
        "{sig} not passed on by {culprit}; {wasted} s wasted, exit {code}",
        "the stop signal reached a handler, but processes that handle it never got it and "
        "were SIGKILLed: by the runtime after the grace period, or by the namespace teardown "
        "when PID 1 exited first (`killed_by`)",
        "{culprit} {victims}: `exec` the server (exec form, or `exec` in the wrapper), or "
        'forward it and wait for the child (`kill -{short} "$child"; wait "$child"`), or {init}.',
        event="{Sig}NotForwarded",
    ),
    Verdict(
        "slow_shutdown",
        False,
        "still stopping when SIGKILL came {grace} s after {sig}, exit {code}",
        "a handler of the stop signal ran, but its process was still running at the "
        "runtime's SIGKILL",
        "{sig} reached {culprit}, but it was still shutting down when SIGKILL came"
        "{grace_text}: " + GRACE_FIX + ".",
        event="SlowShutdown",
    ),
    Verdict(
        "prestop_ate_grace",
        False,
        "the preStop hook ate the grace period: SIGKILL {grace} s after {sig}, still "
        "stopping, exit {code}",
        "a pod container's handler of the stop signal ran but was still running at SIGKILL, "
        "and its preStop hook had taken a share of the grace period first (or all of it: the "
        "kubelet's 2 s floor)",
        "{sig} reached {culprit} only after the preStop hook took {hook} of the "
        "{period} s grace period, leaving {window} s, and it was still shutting down when "
        "SIGKILL came: make the hook shorter, or raise `terminationGracePeriodSeconds` to "
        "cover the hook and the shutdown.",
        event="PreStopAteGrace",
    ),
    Verdict(
        "killed_without_stop_signal",
        False,
        "SIGKILL with no {sig} first, exit {code}",
        "SIGKILL with no stop signal first (`docker kill`, `docker rm -f`)",
        "The runtime sent SIGKILL with no {sig} first (`docker kill`, `docker rm -f`, or a "
        "grace period of 0), so nothing could shut down cleanly: stop it with `docker stop` "
        "or a grace period above 0.",
        event="KilledWithoutStopSignal",
    ),
    Verdict(
        "oom_killed",
        False,
        "ended by the OOM killer, exit {code}",
        "the kernel's OOM killer ended it (not a stop)",
        "The kernel's OOM killer ended {victims} at the container's memory limit; this was no "
        "stop: raise the limit (`docker run --memory`, Kubernetes "
        "`resources.limits.memory`) or use less memory.",
        event="OOMKilled",
    ),
)
VERDICTS: dict[str, Verdict] = {v.name: v for v in _TABLE}


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def shell_kind(cmdline: str | None) -> str | None:
    """'command' for `sh -c …` (shell-form ENTRYPOINT/CMD), 'script' for `sh x.sh`, else None."""
    words = (cmdline or "").split()
    if not words or words[0].rsplit("/", 1)[-1] not in SHELLS:
        return None
    return "command" if "-c" in words[1:3] else "script"


def pid1_fix(cmdline: str | None, sig: str) -> tuple[str, str]:
    """({pid1_is}, {fix}) of the ignored_by_pid1 hint, by how PID 1 runs."""
    kind = shell_kind(cmdline)
    init = INIT_FIX
    if kind == "command":
        return (
            f"PID 1 is a shell (`{cmdline}`) with",
            'use the exec form (ENTRYPOINT ["/path/server", …]) or `exec` the server in the '
            f"command, or {init}.",
        )
    if kind == "script":
        return (
            f"PID 1 is a shell script (`{cmdline}`) with",
            f"end it with `exec server …` so the server becomes PID 1, or {init}.",
        )
    return (
        f"PID 1 (`{cmdline}`) has" if cmdline else "PID 1 has",
        f"handle {sig} in it, {init}, or set STOPSIGNAL to a signal it handles.",
    )


def render(template: str, **fields: Any) -> str:
    """A template with the fields given; a field not given reads `?`."""
    defaults = {"init": INIT_FIX, "left": "", "via": "", "grace_text": ""}
    return string.Formatter().vformat(template, (), _Blank({**defaults, **fields}))


def hint(name: str, **fields: Any) -> str:
    return render(VERDICTS[name].hint, **fields)


def line(name: str, **fields: Any) -> str:
    v = VERDICTS.get(name)
    return render(v.line, **fields) if v else name


def event_reason(name: str, sig: str | None) -> str:
    """The Event reason of a verdict: `SigtermIgnoredByPID1` (CamelCase, as Kubernetes' are)."""
    v = VERDICTS.get(name)
    if v is None:
        return "".join(w.capitalize() for w in name.split("_")) or "Unknown"
    short = (sig or "").removeprefix("SIG")
    return v.event.replace("{Sig}", f"Sig{short.lower()}" if short.isalnum() else "StopSignal")


def wastes_grace(name: str) -> bool:
    v = VERDICTS.get(name)
    return bool(v and v.wastes_grace)


def readme_table() -> str:
    """The README's verdict table, exactly."""
    rows = ["| verdict | wastes the grace period | meaning |", "|---|---|---|"]
    rows += [f"| `{v.name}` | {'yes' if v.wastes_grace else 'no'} | {v.meaning} |" for v in _TABLE]
    return "\n".join(rows)
