"""Which signal will end each process, as judged at generation by the backends that see
only tracepoint fields (bcc, tracefs): get_signal() later reports a group exit as SIGKILL,
and this is how they name the real signal. Pure, bounded."""

from __future__ import annotations

from typing import Any, NamedTuple

from sigtrace import signals
from sigtrace.backends import kernel_rules as kr

BOUND = 4096  # a lost record or line cannot grow a table past this


def bounded_set(d: dict[int, Any], key: int, value: Any) -> None:
    """Set, dropping the oldest entry once the table is full."""
    d[key] = value
    if len(d) > BOUND:
        del d[next(iter(d))]


class GroupExit(NamedTuple):
    sig: int
    certain: bool  # False: the target's handler was unknown (gone from /proc)


class GroupExits(dict[int, GroupExit]):
    """tgid → the signal that ends it."""

    def note(
        self, tgid: int, sig: int, handler: int | None, blocked: bool | None, ptraced: bool
    ) -> None:
        if ptraced and sig != signals.SIGKILL:
            return  # complete_signal() leaves a traced task's fatal signal to get_signal()
        fatal = kr.group_exit_at_generation(sig, handler, blocked)
        if fatal is False:
            return
        old = self.get(tgid)
        if old is None or (fatal and not old.certain):
            bounded_set(self, tgid, GroupExit(sig, bool(fatal)))
