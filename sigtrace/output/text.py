"""Human-readable lines. Untrusted text is escaped; colour only when asked (a terminal
without NO_COLOR)."""

from __future__ import annotations

from typing import TextIO

from sigtrace.escape import printable

_COLORS = {
    "ignored": "\033[1;31m",
    "failed": "\033[1;31m",
    "pending": "\033[33m",
    "merged": "\033[33m",
    "delivered": "\033[32m",
    "lost": "\033[1;35m",
}
_RESET = "\033[0m"


def _proc(p: dict | None) -> str:
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
    def __init__(self, stream: TextIO, color: bool = False) -> None:
        self.stream = stream
        self.color = color
        self.records = 0

    def _paint(self, key: str, text: str) -> str:
        if not self.color or key not in _COLORS:
            return text
        return f"{_COLORS[key]}{text}{_RESET}"

    def line(self, rec: dict) -> str | None:
        t = rec["time"][11:26]
        kind = rec["type"]
        if kind == "signal":
            oc = rec["outcome"] + (f" ({rec['reason']})" if rec.get("reason") else "")
            fan = rec.get("fanout")
            extra = f" fanout {fan['count']} of {fan['requested']}" if fan else ""
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
        if kind == "start":
            return (
                f"tracing {', '.join(rec['filters']['signals'])} with backend "
                f"{rec['backend']} ({rec['kernel']}); Ctrl-C to stop"
            )
        if kind == "stop":
            return f"stopped: {sum(rec['records'].values())} records, {rec['lost']} lost"
        return None

    def write(self, rec: dict) -> None:
        text = self.line(rec)
        if text is not None:
            self.stream.write(text + "\n")
            self.records += 1

    def flush(self) -> None:
        self.stream.flush()
