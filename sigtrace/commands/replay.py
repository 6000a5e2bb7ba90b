"""`sigtrace replay`: classify a raw recording again, without root or BPF."""

from __future__ import annotations

import click

from sigtrace import wire
from sigtrace.correlate import Correlator
from sigtrace.errors import UsageError
from sigtrace.output import Writer, make_writer
from sigtrace.rawlog import read
from sigtrace.timefmt import Clock


def replay_records(offset_ns: int, records) -> list[dict]:
    """Names come from the records alone: /proc at replay time says nothing about then."""
    corr = Correlator(Clock(offset_ns).iso)
    out: list[dict] = []
    for data in records:
        out.extend(corr.feed(wire.decode(data)))
    out.extend(corr.flush(None))
    return out


def replay_file(path: str, writer: Writer) -> int:
    with open(path, "rb") as f:
        try:
            offset, records = read(f)
            out = replay_records(offset, records)
        except (ValueError, wire.DecodeError) as exc:
            raise UsageError(f"{path}: {exc}") from None
    for rec in out:
        writer.write(rec)
    writer.flush()
    return len(out)


@click.command(
    epilog="\b\nExamples:\n  sigtrace replay incident.raw\n  sigtrace replay --format text x.raw"
)
@click.argument("recording", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--format", "fmt", type=click.Choice(["text", "jsonl"]), default="jsonl", show_default=True
)
def replay(recording: str, fmt: str) -> None:
    """Classify a recording made with --save-raw, without root or BPF."""
    from sigtrace.output.sink import stdout_sink

    sink = stdout_sink()  # a full disk: exit 11; `| head`: 141, as when tracing
    replay_file(recording, make_writer(fmt, sink))
    sink.close()
