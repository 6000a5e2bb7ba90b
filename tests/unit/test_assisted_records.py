"""bcc and tracefs build their records with one builder (AssistedRecords): the same signals,
as trace_pipe lines and as bcc_program.c's records, with the same /proc, give the same records.

They differ only in which task fields came from /proc (`sender.*`, `target.*` in `derived`):
BCC's kernel side records the current task's tgid, uid and comm itself, tracefs' lines do not.
"""

from __future__ import annotations

from test_tracefs_records import PIDS, RecordedProcfs

from sigtrace import wire
from sigtrace.backends.bcc_records import BccTranslator, pack
from sigtrace.backends.proctask import TaskFacts
from sigtrace.backends.tracefs_parse import parse_line
from sigtrace.backends.tracefs_records import TraceLineTranslator
from sigtrace.backends.userfilter import Filters
from sigtrace.correlate import Correlator

SENDER = PIDS["recorder"]
HANDLER = 0x678EC0  # a handler function's address, as signal_deliver prints it
# (target, its comm, what the delivery reported: signal, sa_handler)
SCENARIOS = [
    (PIDS["handler"], "python", 15, HANDLER),  # caught: the action is the kernel's sa_handler
    (PIDS["termed"], "sleep", 9, 0),  # a group exit, reported as SIGKILL: it stands for SIGTERM
    (PIDS["init"], "sh", 15, 0),  # SIG_DFL to a namespace's init: /proc's ns pid decides
]


def trace_lines(target: int, comm: str, sig: int, sa_handler: int, t: int) -> list[str]:
    me = f"python-{SENDER}   (  {SENDER}) [001] d..1.  6429.{t:06d}"
    it = f"{comm}-{target}   (  {target}) [001] d..1.  6429.{t + 2:06d}"
    return [
        f"{me}: sys_kill(pid: {target:#x}, sig: 0xf)",
        f"{me}: signal_generate: sig=15 errno=0 code=0 comm={comm} pid={target} grp=1 res=0",
        f"{me}: sys_kill -> 0x0",
        f"{it}: signal_deliver: sig={sig} errno=0 code=0 sa_handler={sa_handler:x} sa_flags=0",
    ]


def bcc_records(target: int, comm: str, sig: int, sa_handler: int, t: int, seq: int) -> list:
    ts = 6429_000_000_000 + t * 1000
    sender = {"pid": SENDER, "tid": SENDER, "comm": b"python"}
    return [
        pack(
            "bt_generate", ts_ns=ts, kind=wire.KIND_GENERATE, cpu=1, seq=seq,
            sys_nr=wire.SYS_KILL, req_pid=target, flags=wire.F_SYSCALL, sig=15, group=1,
            target_tid=target, target_comm=comm.encode(), sender=sender,
        ),
        pack(
            "bt_deliver", ts_ns=ts + 2000, kind=wire.KIND_DELIVER, cpu=1, sig=sig,
            sa_handler=sa_handler, task={"pid": target, "tid": target, "comm": comm.encode()},
        ),
    ]  # fmt: skip


def both() -> tuple[list[wire.Record], list[wire.Record]]:
    wanted = frozenset({9, 15})
    lines = TraceLineTranslator(TaskFacts(RecordedProcfs("/x")), wanted, Filters())
    bcc = BccTranslator(TaskFacts(RecordedProcfs("/x")), wanted, Filters())
    from_lines: list[wire.Record] = []
    from_bcc: list[wire.Record] = []
    for i, scenario in enumerate(SCENARIOS):
        t = 410000 + 1000 * i
        for line in trace_lines(*scenario, t):
            p = parse_line(line)
            assert p is not None, line
            from_lines += lines.line(p)
        from_bcc += bcc.build(bcc_records(*scenario, t, seq=i + 1))
    return from_lines, from_bcc


def without_task_fields(rec: wire.Record) -> wire.Record:
    """The record but for which of its tasks' fields came from /proc."""
    derived = getattr(rec, "derived", ())
    kept = tuple(d for d in derived if d.split(".")[0] not in ("sender", "target"))
    return rec._replace(derived=kept)  # type: ignore[call-arg]


def test_the_same_signals_give_the_same_records_from_both_backends() -> None:
    from_lines, from_bcc = both()
    assert [type(r).__name__ for r in from_lines] == ["Generate", "Deliver"] * len(SCENARIOS)
    assert list(map(without_task_fields, from_lines)) == list(map(without_task_fields, from_bcc))


def test_a_deliverys_action_is_derived_only_where_proc_decided_it() -> None:
    """The drift the two builders had: tracefs listed `action` whenever it read /proc. Only a
    SIG_DFL delivery's action hangs on /proc (an init drops it, known from its ns pid)."""
    for recs in both():
        corr = Correlator(str)
        out = [o for rec in recs for o in corr.feed(rec) if o["type"] == "deliver"]
        caught, group_exit, init = out
        assert caught["action"] == "handler" and "action" not in caught["derived"]
        assert group_exit["action"] == "default_terminate"  # SIGTERM's, through SIGKILL
        assert "signal" in group_exit["derived"] and "action" not in group_exit["derived"]
        assert init["action"] == "dropped_by_pid1" and "action" in init["derived"]
