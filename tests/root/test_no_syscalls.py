"""No hook on the kill-family syscalls, the default (`--no-syscalls`, or no `--syscalls`: a
hook there taxes every syscall on the host). CO-RE still names each signal's call, read from
the sender's registers; what no backend can know then (a fan-out's count, a call that failed)
is null or absent, and the start record says so."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import pytest

from tests.tracing import one, signals

if TYPE_CHECKING:
    from tests.root.helpers import Agents, StartTracer


@pytest.mark.parametrize("flags", [[], ["--no-syscalls"]], ids=["default", "no-syscalls"])
@pytest.mark.parametrize("backend", ["core", "bcc", "tracefs"])
def test_without_syscall_hooks(
    tracer: StartTracer, agents: Agents, backend: str, flags: list[str]
) -> None:
    leader = agents("TERM=handler", process_group=0)
    member = agents("TERM=handler", process_group=leader.pid)
    single, sender = agents("TERM=handler"), agents()
    gone = agents()
    gone.send("exit 0")
    gone.wait()
    pids = [leader.pid, member.pid, single.pid, sender.pid]
    t = tracer(signals=["TERM"], pids=pids, extra=["--backend", backend, *flags])

    sender.run(f"kill {single.pid} TERM")
    single.expect("got 15")
    sender.run(f"kill -{leader.pid} TERM")
    leader.expect("got 15")
    member.expect("got 15")
    sender.run(f"kill {gone.pid} TERM", reply=f"error {errno.ESRCH}")
    records = t.stop()

    start = records[0]
    assert any("no --syscalls" in c for c in start["cannot_see"]), start["cannot_see"]
    assert [r for r in records if r["type"] == "signal" and r["outcome"] == "failed"] == []
    s = one(signals(records, target_pid=single.pid), "the single kill")
    fan = signals(records, sender_pid=sender.pid)
    fan = [r for r in fan if r["target"]["pid"] in (leader.pid, member.pid)]
    assert sorted(r["target"]["pid"] for r in fan) == sorted([leader.pid, member.pid])
    if backend == "core":
        assert (s["syscall"], s["scope"], s["fanout"]) == ("kill", "process", None)
        want = {"id": None, "count": None, "requested": -leader.pid}
        assert all(r["fanout"] == want and r["scope"] == "pgrp" for r in fan), fan
    else:  # no registers read: the call is unknown, never guessed
        assert s["syscall"] is None and all(r["fanout"] is None for r in [*fan, s])
