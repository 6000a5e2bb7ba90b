import pytest

from sigtrace import signals
from sigtrace.errors import UsageError


@pytest.mark.parametrize(
    ("spec", "num"),
    [
        ("TERM", 15),
        ("SIGTERM", 15),
        ("sigterm", 15),
        ("15", 15),
        ("KILL", 9),
        ("CHLD", 17),
        ("SIGCLD", 17),
        ("IOT", 6),
        ("RTMIN", 34),
        ("RTMIN+2", 36),
        ("SIGRTMIN+2", 36),
        ("RTMAX", 64),
        ("RTMAX-1", 63),
        ("64", 64),
        ("SIG32", 32),
    ],
)
def test_parse_one(spec: str, num: int) -> None:
    assert signals.parse_specs([spec]) == {num}


@pytest.mark.parametrize("spec", ["FOO", "0", "65", "RTMIN+31", "RTMAX-31", "RTMIN+x", "-1"])
def test_bad_specs_are_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError):
        signals.parse_specs([spec])


def test_defaults_all_and_commas() -> None:
    assert signals.parse_specs([]) == {15, 9, 2, 3, 1}
    assert signals.parse_specs(["all"]) == set(range(1, 65))
    assert signals.parse_specs(["TERM,USR1", "RTMIN+2"]) == {15, 10, 36}


def test_mask_covers_all_64_signals() -> None:
    assert signals.mask_of([1]) == 1
    assert signals.mask_of([64]) == 1 << 63
    assert signals.mask_of(range(1, 65)) == (1 << 64) - 1


@pytest.mark.parametrize(
    ("num", "name"),
    [(15, "SIGTERM"), (34, "SIGRTMIN"), (36, "SIGRTMIN+2"), (64, "SIGRTMAX"), (32, "SIG32")],
)
def test_names_round_trip(num: int, name: str) -> None:
    assert signals.name(num) == name
    assert signals.parse_specs([name]) == {num}


def test_default_actions() -> None:
    assert signals.default_action(17) == "ignore"
    assert signals.default_action(19) == "stop"
    assert signals.default_action(11) == "core"
    assert signals.default_action(15) == "terminate"
    assert signals.default_action(40) == "terminate"


def test_code_names() -> None:
    assert signals.code_name(15, 0) == "SI_USER"
    assert signals.code_name(9, 0x80) == "SI_KERNEL"
    assert signals.code_name(10, -6) == "SI_TKILL"
    assert signals.code_name(17, 1) == "CLD_EXITED"
    assert signals.code_name(11, 2) == "SEGV_ACCERR"
    assert signals.code_name(15, 77) == "SI_CODE(77)"
