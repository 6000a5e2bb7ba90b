"""Replays a recording through the same decode → correlate path as a live run. Pure but for
reading the file: names come from the records alone (no /proc at replay time)."""

from __future__ import annotations

from sigtrace import wire
from sigtrace.correlate import Correlator
from sigtrace.errors import UsageError
from sigtrace.output import Writer
from sigtrace.rawlog import read
from sigtrace.timefmt import Clock


def replay_records(offset_ns: int, records: list[bytes] | object) -> list[dict]:
    corr = Correlator(Clock(offset_ns).iso)
    out: list[dict] = []
    for data in records:  # type: ignore[attr-defined]
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
