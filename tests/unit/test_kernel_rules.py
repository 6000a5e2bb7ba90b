from __future__ import annotations

import pytest

from sigtrace import wire
from sigtrace.backends.kernel_rules import forced, group_exit_at_generation, ignored_at_generation

DFL, IGN, FUNC = wire.HANDLER_DFL, wire.HANDLER_IGN, wire.HANDLER_FUNC


@pytest.mark.parametrize(
    ("sig", "handler", "blocked", "unkillable", "force", "want"),
    [
        (15, DFL, False, True, True, True),  # a container's init, SIGTERM from the host
        (15, DFL, False, True, False, True),  # ... from inside
        (9, DFL, False, True, True, False),  # SIGKILL from the host goes through
        (9, DFL, False, True, False, True),  # SIGKILL from inside does not
        (15, IGN, False, False, False, True),
        (17, DFL, False, False, False, True),  # SIGCHLD: default ignore
        (15, DFL, True, True, False, False),  # blocked: queued whatever the handler
        (15, FUNC, False, True, False, False),
        (15, DFL, False, False, False, False),
        (15, None, False, False, False, None),  # unknown in, unknown out
        (15, DFL, None, False, False, None),
    ],
)
def test_ignored_at_generation(
    sig: int, handler: int | None, blocked: bool | None, unkillable: bool, force: bool, want: object
) -> None:
    assert ignored_at_generation(sig, handler, blocked, unkillable, force) is want


def test_group_exit_at_generation() -> None:
    assert group_exit_at_generation(9, None, None) is True
    assert group_exit_at_generation(15, DFL, False) is True
    assert group_exit_at_generation(15, FUNC, False) is False
    assert group_exit_at_generation(15, DFL, True) is False
    assert group_exit_at_generation(11, DFL, False) is False  # dumps core: not at generation
    assert group_exit_at_generation(17, DFL, False) is False
    assert group_exit_at_generation(15, None, False) is None
    assert group_exit_at_generation(15, DFL, None) is None
    # caught or ignored: no group exit, whether the mask is known or not
    assert group_exit_at_generation(15, FUNC, None) is False
    assert group_exit_at_generation(15, IGN, None) is False


def test_forced() -> None:
    assert forced(0x80, None) and forced(0, 0) and forced(-6, 0)
    assert not forced(0, 1234) and not forced(0, None)
