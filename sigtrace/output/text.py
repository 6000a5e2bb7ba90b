"""Human-readable lines. Untrusted text is escaped; colour only when asked (a terminal
without NO_COLOR)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sigtrace import verdicts
from sigtrace.escape import printable
from sigtrace.kubegrace import budget_text
from sigtrace.output import Stream
from sigtrace.timefmt import parse_time

_COLORS = {
    "ignored": "\033[1;31m",
    "failed": "\033[1;31m",
    "pending": "\033[33m",
    "merged": "\033[33m",
    "delivered": "\033[32m",
    "lost": "\033[1;35m",
    "story_ok": "\033[1;32m",
    "story_bad": "\033[1;31m",
}
_RESET = "\033[0m"


def _proc(p: Mapping[str, Any] | None) -> str:
    if not p:
        return "?"
    if p.get("pid") is None:
        return f"pidfd {p.get('pidfd')}" if p.get("pidfd") is not None else "?"
    if not p.get("comm"):
        return f"pid {p['pid']}"
    comm = printable(p["comm"])
    ns = f" ns:{p['ns_pid']}" if p.get("ns_pid") not in (None, p["pid"]) else ""
    tag = " [pid1]" if p.get("pid1") and p.get("ns_pid") != p.get("pid") else ""
    return f"{comm}({p['pid']}{ns}){tag}"


class TextWriter:
    def __init__(self, stream: Stream, color: bool = False) -> None:
        self.stream = stream
        self.color = color
        self.records = 0

    def _paint(self, key: str, text: str) -> str:
        if not self.color or key not in _COLORS:
            return text
        return f"{_COLORS[key]}{text}{_RESET}"

    def line(self, rec: Mapping[str, Any]) -> str | None:
        t = rec["time"][11:26]
        kind = rec["type"]
        if kind == "signal":
            oc = rec["outcome"] + (f" ({rec['reason']})" if rec.get("reason") else "")
            fan = rec.get("fanout")
            extra = ""
            if fan:
                extra = f" fanout {fan['count'] if fan['count'] is not None else '?'} of "
                extra += str(fan["requested"])
            return (
                f"{t} {rec['signal']:<9} {_proc(rec['sender'])} -> {_proc(rec['target'])} "
                f"{self._paint(rec['outcome'], oc)} [{rec['scope']}]{extra}"
            )
        if kind == "deliver":
            was = f" (reported as {rec['reported_as']})" if rec.get("reported_as") else ""
            return f"{t} {rec['signal']:<9} deliver {_proc(rec['target'])} {rec['action']}{was}"
        if kind == "exit":
            how = f" by {rec['signal']}" if rec.get("signal") else ""
            oom = " OOM" if rec.get("oom") else ""
            return f"{t} exit      {_proc(rec['process'])} code {rec['exit_code']}{how}{oom}"
        if kind == "oom":
            return f"{t} OOM       victim {_proc(rec['victim'])}"
        if kind == "lost":
            return f"{t} {self._paint('lost', 'LOST')}      {rec['count']} records"
        if kind == "verdict":
            return self._story(rec)
        if kind == "start":
            return (
                f"tracing {', '.join(rec['filters']['signals'])} with backend "
                f"{rec['backend']} ({rec['kernel']}); Ctrl-C to stop"
            )
        if kind == "stop":
            return f"stopped: {sum(rec['records'].values())} records, {rec['lost']} lost"
        return None

    def _story(self, rec: Mapping[str, Any]) -> str:
        """A termination story: what happened, from the stop signal on, then the fix."""
        c = rec.get("container") or {}
        cid = c.get("id") or "?"
        label = printable(c.get("name") or (cid[:12] if len(cid) == 64 else cid))
        evidence = rec.get("evidence") or []
        origin = rec.get("stop_at") or (evidence[0]["time"] if evidence else rec["time"])
        t0 = parse_time(origin)
        done = "" if rec.get("complete", True) else " (incomplete)"
        lines = [f"{rec['time'][11:26]} story     {label}{done}"]
        for ev in evidence:
            rel = (parse_time(ev["time"]) - t0) / 1e9
            lines.append(f"  {rel:+.3f}s  {printable(ev['what'])}")
        culprit = rec.get("culprit")
        text = verdicts.line(
            rec["verdict"],
            sig=rec.get("stop_signal"),
            wasted=rec.get("wasted_s"),
            grace=rec.get("grace_s"),
            code=rec.get("exit_code"),
            culprit="PID 1" if not culprit or culprit.get("pid1") else _proc(culprit),
        )
        key = "story_ok" if rec["verdict"] == "graceful" else "story_bad"
        lines.append(f"  verdict: {self._paint(key, rec['verdict'])}: {printable(text)}")
        if isinstance(rec.get("grace"), dict):
            lines.append(f"  {printable(budget_text(rec['grace']))}")
        lines.append(f"  fix: {printable(rec.get('hint') or '')}")
        if rec.get("caveat"):
            lines.append(f"  note: {printable(rec['caveat'])}")
        return "\n".join(lines)

    def write(self, rec: Mapping[str, Any]) -> None:
        text = self.line(rec)
        if text is not None:
            self.stream.write(text + "\n")
            self.records += 1

    def flush(self) -> None:
        self.stream.flush()
