"""Process-events connector messages → exits, on messages recorded from the real kernel."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from sigtrace.backends.procevents import decode

DATA = Path(__file__).resolve().parents[1] / "data" / "tracefs"


def test_recorded_exits_carry_the_wait_status() -> None:
    pids = json.loads((DATA / "procevents.pids.json").read_text())
    exits, acks = decode((DATA / "procevents.bin").read_bytes())
    by_pid = {e.tgid: e for e in exits}
    assert by_pid[pids["termed"]].exit_code == 15  # killed by SIGTERM
    assert by_pid[pids["exit3"]].exit_code == 3 << 8
    assert all(e.ts_ns > 0 and e.tid == e.tgid for e in by_pid.values())
    assert acks == []


def test_ack_and_truncated_messages() -> None:
    cn = struct.pack("=IIIIHH", 1, 1, 7, 43, 20, 0) + struct.pack("=IIQI", 0, 0, 1, 1)
    nl = struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, 0)
    exits, acks = decode(nl + cn)
    assert exits == [] and acks == [(7, 43, 1)]
    assert decode((nl + cn)[:30]) == ([], [])  # cut short: nothing, no exception
    assert decode(b"") == ([], [])


def test_kernel_version_is_read_once_from_the_release() -> None:
    from sigtrace.features import kernel_version

    assert kernel_version("6.18.0-1-amd64") == (6, 18)
    assert kernel_version("6.6-rc1") == (6, 6)
    assert kernel_version("5.15.0") < (6, 6)  # type: ignore[operator]
    assert kernel_version("weird") is None
