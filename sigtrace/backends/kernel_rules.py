"""kernel/signal.c's decisions, for backends that see the facts but not the decision. Pure.

The CO-RE backend reads the tracepoint's `result` and the signal struct's group exit code. The
ptrace backend sees neither (a traced task's signals are never ignored at generation), and
the tracefs backend sees no group exit code; both rebuild them from /proc facts with these
rules, and say so in `derived`. None in, None out: an unknown fact gives an unknown answer.
"""

from __future__ import annotations

from sigtrace import signals, wire

SI_USER = 0
SI_KERNEL = 0x80
SI_TKILL = -6


def ignored_at_generation(
    sig: int, handler: int | None, blocked: bool | None, unkillable: bool, force: bool
) -> bool | None:
    """sig_ignored() without the ptrace exception: would the kernel drop it when sent?

    A blocked signal is queued whatever its handler; otherwise sig_task_ignored(): SIG_IGN,
    a default-ignored signal, or an init's SIG_DFL (SIGKILL/SIGSTOP still pass when `force`:
    sent from an ancestor pid namespace or by the kernel).
    """
    if handler is None or blocked is None:
        return None
    if blocked:
        return False
    if handler == wire.HANDLER_IGN:
        return True
    if handler != wire.HANDLER_DFL:
        return False
    if sig in signals.KERNEL_IGNORE:
        return True
    return unkillable and not (force and sig in signals.KERNEL_ONLY)


def group_exit_at_generation(sig: int, handler: int | None, blocked: bool | None) -> bool | None:
    """complete_signal(): a default-fatal, unblocked signal that dumps no core ends the whole
    thread group right away, and get_signal() later reports it to each thread as SIGKILL."""
    if sig == signals.SIGKILL:
        return True
    if signals.default_action(sig) != "terminate":
        return False
    if handler is not None and handler != wire.HANDLER_DFL:
        return False  # caught or ignored: whatever the mask was
    if handler is None or blocked is None:
        return None
    return not blocked


def forced(code: int, si_pid: int | None) -> bool:
    """send_signal_locked()'s `force`: from the kernel, or from an ancestor pid namespace."""
    return code == SI_KERNEL or (code <= 0 and si_pid == 0)
