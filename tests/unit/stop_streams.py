"""Synthesized container stops, record for record in the shape of the recorded ones
(tests/data/stories/*.jsonl, CO-RE backend): the scenarios of issue 10 that no recording holds
yet. Fields a kernel with `caught` (target_state.caught on SIGKILL records, `caught` on exits)
reports are given; `caught=None` leaves them out, as an older recording has them."""

from __future__ import annotations

from typing import Any

from sigtrace.timefmt import Clock

Rec = dict[str, Any]
T0 = 1_795_000_000_000_000_000  # ns since the epoch
SIGNO = {"SIGTERM": 15, "SIGKILL": 9, "SIGQUIT": 3, "SIGINT": 2}
MS = 1_000_000
ISO = Clock(0).iso


class Stop:
    """One container's records, in time order; times in ms after T0."""

    def __init__(self, name: str, cid_digit: str = "a") -> None:
        self.container = {
            "id": cid_digit * 64,
            "name": f"synth-{name}",
            "runtime": "docker",
            "image": f"synth-{name}",
        }
        self.records: list[Rec] = []

    def proc(self, pid: int, ns_pid: int, comm: str, cmdline: str | None = None) -> Rec:
        return {
            "pid": pid,
            "tid": pid,
            "ns_pid": ns_pid,
            "comm": comm,
            "pid1": ns_pid == 1,
            "uid": 0,
            "cmdline": cmdline,
            "container": self.container,
        }

    @staticmethod
    def runc(pid: int) -> Rec:
        return {"pid": pid, "tid": pid, "ns_pid": pid, "comm": "runc", "pid1": False,
                "uid": 0, "container": None}  # fmt: skip

    def _add(self, ms: float, rec: Rec) -> Rec:
        rec = {"schema": "sigtrace.v1", "type": rec.pop("type"), "time": ISO(T0 + int(ms * MS))}
        self.records.append(rec)
        return rec

    def signal(
        self,
        ms: float,
        sender: Rec,
        target: Rec,
        sig: str = "SIGTERM",
        *,
        outcome: str = "delivered",
        reason: str | None = None,
        scope: str = "process",
        handler: str = "handler",
        blocked: bool = False,
        waiting: bool = False,
        caught: list[str] | None = None,
        fanout: Rec | None = None,
    ) -> Rec:
        state: Rec = {"handler": handler, "blocked": blocked, "unkillable": target["pid1"],
                      "ptraced": False, "waiting": waiting}  # fmt: skip
        if caught is not None:
            state["caught"] = caught
        rec = self._add(ms, {"type": "signal"})
        teardown = scope == "pidns_teardown"
        rec.update(
            signal=sig,
            signo=SIGNO[sig],
            code="SI_KERNEL" if teardown else "SI_USER",
            sender=sender,
            target=target,
            outcome=outcome,
            reason=reason,
            scope=scope,
            fanout=fanout,
            syscall=None if teardown else "kill",
            result={"ignored": "ignored", "merged": "already_pending"}.get(outcome, "delivered"),
            target_state=state,
            si_pid=None if teardown else 0,
        )
        return rec

    def deliver(self, ms: float, target: Rec, action: str, sig: str = "SIGTERM") -> Rec:
        rec = self._add(ms, {"type": "deliver"})
        rec.update(signal=sig, signo=SIGNO[sig], code="SI_USER", target=target, action=action,
                   reported_as=None)  # fmt: skip
        return rec

    def handled(self, ms: float, sender: Rec, target: Rec, sig: str = "SIGTERM") -> None:
        """A signal its target's handler runs for."""
        self.signal(ms, sender, target, sig)
        self.deliver(ms + 0.05, target, "handler", sig)

    def exit(
        self, ms: float, proc: Rec, code: int, sig: str | None = None, caught: list | None = None
    ) -> Rec:
        rec = self._add(ms, {"type": "exit"})
        rec.update(process=proc, exit_code=code, signal=sig, core_dumped=False, oom=False)
        if caught is not None:
            rec["caught"] = caught
        return rec

    def sigkill(self, ms: float, sender: Rec, target: Rec, caught: list | None, **kw: Any) -> None:
        """A SIGKILL (the runtime's, or the teardown's with scope=...) and the exit it makes."""
        self.signal(ms, sender, target, "SIGKILL", handler="default", caught=caught, **kw)
        self.deliver(ms + 0.01, target, "default_terminate", "SIGKILL")
        self.exit(ms + 0.02, target, 137, "SIGKILL", caught=caught)

    def teardown(self, ms: float, pid1: Rec, target: Rec, caught: list | None) -> None:
        self.sigkill(ms, pid1, target, caught, scope="pidns_teardown")


TERM = ["SIGTERM"]


def wrapper_exits_first(caught: bool = True) -> list[Rec]:
    """`sh -c "trap 'exit 0' TERM; server & wait"`: PID 1 exits at once; the server, which
    handles SIGTERM, is SIGKILLed by the namespace teardown without ever getting it."""
    s = Stop("wrapper")
    sh = s.proc(100, 1, "sh", "/bin/sh -c trap 'exit 0' TERM; /app/server & wait")
    server = s.proc(120, 7, "server", "/app/server")
    s.handled(0, s.runc(200), sh)
    s.exit(3, sh, 0, caught=TERM if caught else None)
    s.teardown(3.2, sh, server, TERM if caught else None)
    return s.records


def pid1_blocks() -> list[Rec]:
    """PID 1 blocks SIGTERM (sigprocmask) and never unblocks it: pending until SIGKILL."""
    s = Stop("blocks", "b")
    app = s.proc(100, 1, "app", "/app/app")
    s.signal(0, s.runc(200), app, outcome="pending", reason="blocked", handler="default",
             blocked=True)  # fmt: skip
    s.sigkill(2000, s.runc(201), app, caught=[])
    return s.records


def init_forwards_to_sig_ign(sig: str = "SIGTERM") -> list[Rec]:
    """`docker run --init`: tini takes the stop signal with sigtimedwait and forwards it; the
    app has SIG_IGN for it; SIGKILL after the grace period."""
    s = Stop("sigign-app", "c")
    tini = s.proc(100, 1, "docker-init", "/sbin/docker-init -- /app/app")
    app = s.proc(120, 7, "app", "/app/app")
    s.signal(0, s.runc(200), tini, sig, handler="default", waiting=True)
    s.signal(0.1, tini, app, sig, outcome="ignored", reason="sig_ign", handler="ignore")
    s.sigkill(2000, s.runc(201), tini, caught=[])
    s.teardown(2000.3, tini, app, caught=[])
    return s.records


def two_level_wrapper() -> list[Rec]:
    """sh -> sh -> server: PID 1's trap forwards to the inner shell, whose own trap exits
    without passing it on; the teardown SIGKILLs the server."""
    s = Stop("two-level", "d")
    trap = "trap 'kill -TERM $c; wait $c' TERM"
    sh1 = s.proc(100, 1, "sh", f"/bin/sh -c {trap}; sh inner.sh & c=$!; wait")
    sh2 = s.proc(120, 7, "sh", "sh inner.sh")
    server = s.proc(130, 8, "server", "/app/server")
    s.handled(0, s.runc(200), sh1)
    s.handled(1, sh1, sh2)
    s.exit(2, sh2, 0, caught=TERM)
    s.exit(3, sh1, 0, caught=TERM)
    s.teardown(3.2, sh1, server, TERM)
    return s.records


def setsid_pgrp_kill() -> list[Rec]:
    """dumb-init (setsid): SIGTERM taken with sigtimedwait, passed on with kill(-pgid) to the
    whole group: the shell dies of it, the app handles it and exits; graceful."""
    s = Stop("dumb-init", "e")
    init = s.proc(100, 1, "dumb-init", "/usr/bin/dumb-init -- sh -c /app/server")
    sh = s.proc(120, 7, "sh", "sh -c /app/server")
    server = s.proc(121, 8, "server", "/app/server")
    fan = {"id": 77, "count": 2, "requested": -120}
    s.signal(0, s.runc(200), init, handler="default", waiting=True)
    s.signal(0.1, init, sh, scope="pgrp", handler="default", fanout=fan)
    s.signal(0.11, init, server, scope="pgrp", fanout=fan)
    s.deliver(0.2, sh, "default_terminate")
    s.exit(0.3, sh, 143, "SIGTERM", caught=[])
    s.deliver(0.25, server, "handler")
    s.exit(150, server, 0, caught=TERM)
    s.exit(151, init, 0, caught=[])
    return s.records


def forward_and_wait() -> list[Rec]:
    """PID 1's trap forwards SIGTERM to the server and waits for it; its `sleep` helper (no
    handler) is left to the teardown: graceful."""
    s = Stop("forward-wait", "f")
    sh = s.proc(100, 1, "sh", "/bin/sh /entry.sh")
    server = s.proc(120, 7, "server", "/app/server")
    sleep = s.proc(121, 8, "sleep", "sleep 3600")
    s.handled(0, s.runc(200), sh)
    s.handled(1, sh, server)
    s.exit(300, server, 0, caught=TERM)
    s.exit(301, sh, 0, caught=TERM)
    s.teardown(301.2, sh, sleep, caught=[])
    return s.records


def slow_app_behind_init() -> list[Rec]:
    """tini forwards; the app's handler is still running when the runtime's SIGKILL comes."""
    s = Stop("slow-app", "0")
    tini = s.proc(100, 1, "docker-init", "/sbin/docker-init -- /app/app")
    app = s.proc(120, 7, "app", "/app/app")
    s.signal(0, s.runc(200), tini, handler="default", waiting=True)
    s.handled(0.1, tini, app)
    s.sigkill(2000, s.runc(201), tini, caught=[])
    s.teardown(2000.3, tini, app, caught=TERM)
    return s.records


SCENARIOS = {
    "wrapper_exits_first": wrapper_exits_first,
    "pid1_blocks": pid1_blocks,
    "init_forwards_to_sig_ign": init_forwards_to_sig_ign,
    "two_level_wrapper": two_level_wrapper,
    "setsid_pgrp_kill": setsid_pgrp_kill,
    "forward_and_wait": forward_and_wait,
    "slow_app_behind_init": slow_app_behind_init,
}
