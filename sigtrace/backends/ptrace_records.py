"""A tracee's signal-delivery-stop → the Generate and Deliver records other backends emit.

ptrace sees a signal only when the tracee dequeues it, with its siginfo: si_code and si_pid
(the sender's pid as the kernel stored it; 0 from an ancestor pid namespace). It changes what
it observes: a traced task's signals are never ignored at generation (sig_ignored() skips
ptraced tasks), so a traced init's SIGTERM is queued and stops it. The kernel's decision is
rebuilt from /proc with kernel_rules, as the untraced kernel would have made it, and the
records list what was rebuilt in `derived`. Pure apart from the injected lookups.
"""

from __future__ import annotations

from collections.abc import Callable

from sigtrace import wire
from sigtrace.backends import kernel_rules as kr
from sigtrace.backends.proctask import unknown_task
from sigtrace.backends.ptrace_stops import SigInfo
from sigtrace.classify import RESULT_DELIVERED, RESULT_IGNORED
from sigtrace.procfs import Status

GENERATE_DERIVED = (
    "time",  # when it was delivered, not sent
    "result",
    "outcome",
    "scope",
    "target_state.handler",
    "target_state.blocked",
    "target_state.unkillable",
    "target.ns_pid",
)
DELIVER_DERIVED = ("action", "target.ns_pid")


def delivery_records(
    ts_ns: int,
    info: SigInfo,
    target: wire.Task,
    status: Status | None,
    sender_of: Callable[[int], wire.Task | None],
) -> list[wire.Record]:
    """Generate (+ Deliver when the untraced kernel would have delivered it) for one stop.

    `sender_of(si_pid)` maps si_pid to the sending task where that can be told.
    """
    sig, code = info.signo, info.code
    user = code <= 0  # SI_USER, SI_QUEUE, SI_TKILL...: sent by a system call
    handler = status.handler(sig) if status is not None else None
    unkillable = target.ns_pid == 1
    # A signal-delivery-stop means it was dequeued: it was not blocked when it was.
    ignored = kr.ignored_at_generation(sig, handler, False, unkillable, kr.forced(code, info.pid))
    derived = list(GENERATE_DERIVED)
    flags = wire.F_PTRACED | (wire.F_UNKILLABLE if unkillable else 0)
    sys_nr = 0
    if user:
        # A system call sent it; which one is not known (no fan-out either): sys_nr 0 gives
        # scope "process" and syscall null, but a thread-directed one (SI_TKILL) came from
        # tgkill() or tkill().
        flags |= wire.F_SYSCALL
        if code == kr.SI_TKILL:
            sys_nr = wire.SYS_TGKILL
            derived.append("syscall")
    sender = sender_of(info.pid) if user and info.pid > 0 else None
    if sender is not None:
        derived.append("sender")
    else:
        sender = unknown_task(None, None)
    result = RESULT_IGNORED if ignored else RESULT_DELIVERED
    gen = wire.Generate(
        ts_ns,
        0,
        0,
        sys_nr,
        (target.pid or 0) if user else 0,  # unused for ptrace's scopes (no SYS_KILL)
        0,
        sig,
        code,
        0,
        info.pid,
        info.uid,
        wire.INFO_PTR,
        0 if code == kr.SI_TKILL else 1,
        result,
        handler,
        flags,
        sender,
        target,
        tuple(derived),
    )
    if ignored is not False:
        return [gen]
    deliver = wire.Deliver(
        ts_ns,
        0,
        sig,
        code,
        info.pid,
        wire.INFO_PTR,
        handler,
        0,
        wire.F_UNKILLABLE if unkillable else 0,
        target,
        DELIVER_DERIVED,
    )
    return [gen, deliver]
