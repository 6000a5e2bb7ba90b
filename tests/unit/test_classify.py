import pytest

from sigtrace import wire
from sigtrace.classify import (
    action_of,
    exit_status,
    failed_outcome,
    outcome_of,
    scope_of_generate,
    scope_of_syscall,
)

DFL, IGN, FUNC = wire.HANDLER_DFL, wire.HANDLER_IGN, wire.HANDLER_FUNC
UNK, BLK = wire.F_UNKILLABLE, wire.F_BLOCKED


@pytest.mark.parametrize(
    ("sig", "result", "handler", "flags", "expected"),
    [
        (15, 0, FUNC, 0, ("delivered", None)),
        (15, 0, DFL, BLK, ("pending", "blocked")),
        (15, 1, DFL, UNK, ("ignored", "pid1_no_handler")),
        (9, 1, DFL, UNK, ("ignored", "pid1_no_handler")),  # SIGKILL from inside the container
        (15, 1, IGN, 0, ("ignored", "sig_ign")),
        (15, 1, IGN, UNK, ("ignored", "sig_ign")),  # SIG_IGN explains it even for an init
        (17, 1, DFL, 0, ("ignored", "default_ignore")),
        (17, 1, DFL, UNK, ("ignored", "default_ignore")),
        (15, 1, DFL, 0, ("ignored", "kernel_thread")),
        (10, 2, FUNC, BLK, ("merged", "already_pending")),
        (40, 3, FUNC, 0, ("failed", "EAGAIN")),
        (40, 4, FUNC, 0, ("delivered", "info_lost")),
    ],
)
def test_outcome(sig: int, result: int, handler: int, flags: int, expected: tuple) -> None:
    assert tuple(outcome_of(sig, result, handler, flags)) == expected


def test_failed_outcome_names_errno() -> None:
    assert failed_outcome(-1) == ("failed", "EPERM")
    assert failed_outcome(-3) == ("failed", "ESRCH")


@pytest.mark.parametrize(
    ("nr", "req", "flags", "scope"),
    [
        (wire.SYS_KILL, 42, 0, "process"),
        (wire.SYS_KILL, 0, 0, "pgrp"),
        (wire.SYS_KILL, -42, 0, "pgrp"),
        (wire.SYS_KILL, -1, 0, "all"),
        (wire.SYS_TKILL, 42, 0, "thread"),
        (wire.SYS_TGKILL, 42, 0, "thread"),
        (wire.SYS_RT_TGSIGQUEUEINFO, 42, 0, "thread"),
        (wire.SYS_RT_SIGQUEUEINFO, 42, 0, "process"),
        (wire.SYS_PIDFD_SEND_SIGNAL, 3, 0, "process"),
        (wire.SYS_PIDFD_SEND_SIGNAL, 3, 1, "thread"),
        (wire.SYS_PIDFD_SEND_SIGNAL, 3, 4, "pgrp"),
    ],
)
def test_scope_of_syscall(nr: int, req: int, flags: int, scope: str) -> None:
    assert scope_of_syscall(nr, req, flags) == scope


def test_scope_without_syscall() -> None:
    assert scope_of_generate(wire.F_TEARDOWN, 1) == "pidns_teardown"
    assert scope_of_generate(0, 1) == "kernel"
    assert scope_of_generate(wire.F_SYSCALL, 0) == "thread"


def test_group_exit_reported_as_sigkill_is_the_real_signal() -> None:
    a = action_of(9, DFL, wire.F_GROUP_EXIT, 15)
    assert (a.signo, a.action, a.reported_as) == (15, "default_terminate", 9)
    a = action_of(9, DFL, wire.F_GROUP_EXIT, 11 | 0x80)
    assert (a.signo, a.action, a.reported_as) == (11, "default_core", 9)
    a = action_of(9, DFL, wire.F_GROUP_EXIT, 9)  # a real SIGKILL stays SIGKILL
    assert (a.signo, a.action, a.reported_as) == (9, "default_terminate", None)


@pytest.mark.parametrize(
    ("sig", "handler", "flags", "action"),
    [
        (15, FUNC, 0, "handler"),
        (15, IGN, 0, "ignore"),
        (17, DFL, 0, "default_ignore"),
        (15, DFL, UNK, "dropped_by_pid1"),
        (9, DFL, UNK, "default_terminate"),  # forced from an ancestor namespace
        (19, DFL, 0, "default_stop"),
        (11, DFL, 0, "default_core"),
        (15, DFL, 0, "default_terminate"),
    ],
)
def test_action(sig: int, handler: int, flags: int, action: str) -> None:
    assert action_of(sig, handler, flags, 0).action == action


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0, (0, None, False)),
        (3 << 8, (3, None, False)),
        (15, (143, 15, False)),
        (9, (137, 9, False)),
        (11 | 0x80, (139, 11, True)),
    ],
)
def test_exit_status(status: int, expected: tuple) -> None:
    assert tuple(exit_status(status)) == expected
