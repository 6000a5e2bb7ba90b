"""`sigtrace replay`: classify a raw recording again, without root or BPF, and tell its
termination stories (`verdict` records), so that an incident recorded on a node can be judged
later on a laptop.

No runtime can name the containers of then: a process in a pid namespace other than the host's
gets `container: {id: "pidns:<inode>", name: null, …}`, its pid namespace standing for its
container (the story of a container is the story of its namespace's init). Image STOPSIGNALs are
not known either: the stop signal is SIGTERM.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click

from sigtrace import wire
from sigtrace.correlate import Correlator, basic_process
from sigtrace.errors import UsageError
from sigtrace.escape import printable
from sigtrace.output import Writer, make_writer
from sigtrace.rawlog import read
from sigtrace.stories import StoryTracker
from sigtrace.timefmt import Clock

HOST_PIDNS = 0xEFFFFFFC  # PROC_PID_INIT_INO: the initial pid namespace's inode number


def describe_offline(task: wire.Task, role: str) -> dict[str, Any]:
    """A process object from the record alone; its pid namespace stands for its container."""
    out = basic_process(task, role)
    inum = task.pidns_inum
    out["container"] = (
        {"id": f"pidns:{inum}", "name": None, "runtime": None, "image": None}
        if inum and inum != HOST_PIDNS
        else None
    )
    return out


def replay_records(
    offset_ns: int, records: Iterable[bytes], stories: bool = True
) -> list[dict[str, Any]]:
    """Names come from the records alone: /proc at replay time says nothing about then."""
    corr = Correlator(Clock(offset_ns).iso, describe_offline if stories else basic_process)
    tracker = StoryTracker() if stories else None
    out: list[dict[str, Any]] = []

    def emit(recs: list[dict[str, Any]]) -> None:
        for rec in recs:
            out.append(rec)
            if tracker is not None:
                out.extend(tracker.feed(rec))

    for data in records:
        emit(corr.feed(wire.decode(data)))
    emit(corr.flush(None))
    if tracker is not None:
        out.extend(tracker.flush())
    return out


def replay_file(path: str, writer: Writer) -> int:
    with open(path, "rb") as f:
        try:
            offset, records = read(f)
            out = replay_records(offset, records)
        except (ValueError, wire.DecodeError) as exc:
            raise UsageError(f"{printable(path)}: {exc}") from None
    for rec in out:
        writer.write(rec)
    writer.flush()
    if records.cut:  # what was whole is out; say that the rest is missing, never silently
        click.echo(
            f"sigtrace: {printable(path)}: cut short after {records.count} records "
            f"(the last one incomplete: {records.cut})",
            err=True,
        )
    return len(out)


@click.command(
    epilog="\b\nExamples:\n  sigtrace replay incident.raw\n  sigtrace replay --format text x.raw"
)
@click.argument("recording", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--format", "fmt", type=click.Choice(["text", "jsonl"]), default="jsonl", show_default=True
)
def replay(recording: str, fmt: str) -> None:
    """Classify a recording made with --save-raw, without root or BPF, and tell its stories."""
    from sigtrace.output.sink import stdout_sink

    sink = stdout_sink()  # a full disk: exit 11; `| head`: 141, as when tracing
    replay_file(recording, make_writer(fmt, sink))
    sink.close()
