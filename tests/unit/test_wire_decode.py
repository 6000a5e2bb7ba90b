import pytest

from sigtrace import wire

TASK = (11, 22, 100, 101, 1, 1, 4026531836, 0, b"sh\0\0garbage\0\0\0\0\0")


def test_generate_round_trip() -> None:
    head = (123, wire.KIND_GENERATE, 1)  # ts, kind, cpu
    # seq, nr, req_pid, sys_flags, pad: a pidfd signal to a process group (flags 4)
    call = (7, wire.SYS_PIDFD_SEND_SIGNAL, 42, 4, 0xDEAD)
    facts = (15, 0, 0, 0, 0, wire.INFO_NOINFO, 1, 1, wire.HANDLER_DFL, wire.F_UNKILLABLE)
    target = (33, 44, 200, 201, 5, 6, 99, 1000, b"\xffbad\x1b[31m\0" + b"\0" * 8)
    values = (*head, *call, *facts, 0xFFFF, *TASK, *target)  # caught, but not flagged read
    rec = wire.decode(wire.struct_of("st_generate").pack(*values))
    assert isinstance(rec, wire.Generate)
    assert (rec.ts_ns, rec.cpu, rec.syscall_seq, rec.sys_nr, rec.req_pid, rec.sys_flags) == (
        123,
        1,
        7,
        wire.SYS_PIDFD_SEND_SIGNAL,
        42,
        4,
    )
    assert (rec.sig, rec.result, rec.flags, rec.caught) == (15, 1, wire.F_UNKILLABLE, None)
    assert rec.sender == wire.Task(11, 22, 100, 101, 1, 1, 4026531836, 0, "sh")
    assert rec.target.pid == 200 and rec.target.ns_pid == 5 and rec.target.uid == 1000
    # not UTF-8 and a terminal escape: decoded losslessly, escaped later on output
    assert rec.target.comm == "\\xffbad\x1b[31m"


def test_each_kind_decodes_to_its_type() -> None:
    cases = {
        "st_deliver": (
            wire.KIND_DELIVER,
            wire.Deliver,
            (9, 0, 0, 0, 0, 15, wire.F_GROUP_EXIT, 0, *TASK),
        ),
        "st_syscall": (wire.KIND_SYSCALL, wire.Syscall, (5, -1, 1, 15, 42, 0, 0, 0, *TASK)),
        "st_exit": (wire.KIND_EXIT, wire.Exit, (15, 0, 0, *TASK)),
        "st_oom": (wire.KIND_OOM, wire.Oom, (*TASK, *TASK)),
    }
    for name, (kind, cls, rest) in cases.items():
        rec = wire.decode(wire.struct_of(name).pack(1, kind, 0, *rest))
        assert type(rec) is cls, name
    sc = wire.decode(
        wire.struct_of("st_syscall").pack(1, wire.KIND_SYSCALL, 0, 5, -1, 1, 15, 42, 0, 3, 0, *TASK)
    )
    assert (sc.seq, sc.ret, sc.nr, sc.sig, sc.req_pid, sc.generated) == (5, -1, 1, 15, 42, 3)
    d = wire.decode(
        wire.struct_of("st_deliver").pack(
            1, wire.KIND_DELIVER, 0, 9, 0, 0, 0, 0, 15, wire.F_GROUP_EXIT, 0, *TASK
        )
    )
    assert (d.sig, d.group_exit_code, d.flags, d.task.comm) == (9, 15, wire.F_GROUP_EXIT, "sh")


def _kill(caught: int, flags: int) -> bytes:
    """A SIGKILL's st_generate with the given handler mask and flags."""
    facts = (9, 0x80, 0, 0, 0, wire.INFO_PRIV, 1, 0, wire.HANDLER_DFL, flags, caught)
    return wire.struct_of("st_generate").pack(
        1, wire.KIND_GENERATE, 0, 0, 0, 0, 0, 0, *facts, *TASK, *TASK
    )


def test_caught_mask_is_decoded_only_where_the_kernel_read_it() -> None:
    # SIGINT, SIGTERM, glibc's SIG32, SIGRTMIN+2 (36) and SIGRTMAX (64): bit n-1 for signal n
    mask = 1 << 1 | 1 << 14 | 1 << 31 | 1 << 35 | 1 << 63
    assert wire.decode(_kill(mask, wire.F_CAUGHT)).caught == mask
    assert wire.decode(_kill(0, wire.F_CAUGHT)).caught == 0  # read: no handler at all
    assert wire.decode(_kill(mask, 0)).caught is None  # not read (no sighand): unknown
    exit_head = (1, wire.KIND_EXIT, 0, 9, wire.F_CAUGHT)
    ex = wire.decode(wire.struct_of("st_exit").pack(*exit_head, 1 << 14, *TASK))
    assert isinstance(ex, wire.Exit) and (ex.exit_code, ex.caught) == (9, 1 << 14)
    ex = wire.decode(wire.struct_of("st_exit").pack(1, wire.KIND_EXIT, 0, 9, 0, 1 << 14, *TASK))
    assert ex.caught is None and ex.task.comm == "sh"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\0" * 8,
        wire.struct_of("st_header").pack(1, 99, 0),
        wire.struct_of("st_header").pack(1, wire.KIND_GENERATE, 0),
    ],
)
def test_bad_records_raise_decode_error(data: bytes) -> None:
    with pytest.raises(wire.DecodeError):
        wire.decode(data)
