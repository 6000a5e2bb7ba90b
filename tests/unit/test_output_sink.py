"""The output sink on real descriptors: a full device (/dev/full), a pipe whose reader is gone,
and a write the kernel cuts short (RLIMIT_FSIZE: a short write, then EFBIG), without root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from sigtrace.correlate import Correlator
from sigtrace.errors import OutputError, ReaderGone
from sigtrace.output.sink import LineSink
from sigtrace.output_loss import OutputLossReport
from sigtrace.timefmt import Clock

LINE = '{"n": %d, "pad": "' + "x" * 280 + '"}\n'  # 300 bytes with n < 100


@pytest.fixture
def full() -> Iterator[LineSink]:
    fd = os.open("/dev/full", os.O_WRONLY)
    sink = LineSink(fd, "/dev/full")
    yield sink
    os.close(fd)


def test_lines_wait_in_the_buffer_until_flushed(tmp_path: Path) -> None:
    sink = LineSink.open(str(tmp_path / "out"), "--output", append=False)
    sink.write(LINE % 10)
    assert (tmp_path / "out").read_text() == ""
    sink.flush()
    assert (tmp_path / "out").read_text() == LINE % 10
    sink.close()


def test_a_full_device_stops_the_cli_with_exit_11(full: LineSink) -> None:
    full.write(LINE % 10)
    with pytest.raises(OutputError) as err:
        full.flush()
    assert err.value.code == 11
    assert err.value.message == ("writing to /dev/full failed: No space left on device")
    assert full.dropped == 1


def test_the_daemon_counts_the_lines_and_logs_the_failure_once(full: LineSink) -> None:
    full.keep_going = True
    drops: list[int] = []
    changes: list[OSError | None] = []
    full.on_drop, full.on_change = drops.append, changes.append
    for n in range(3):
        full.write(LINE % n)
        full.flush()
    full.write(LINE % 3 + LINE % 4)
    full.flush()
    assert drops == [1, 1, 1, 2]
    assert full.dropped == full.unreported == 5
    assert [e.strerror for e in changes if e] == ["No space left on device"] and len(changes) == 1


def test_stdout_whose_reader_left_is_quiet_and_141() -> None:
    r, w = os.pipe()
    os.close(r)
    sink = LineSink(w, "stdout")
    sink.write(LINE % 1)
    with pytest.raises(ReaderGone) as err:
        sink.flush()
    assert (err.value.code, err.value.message) == (141, "")
    os.close(w)


def test_a_fifo_named_with_output_whose_reader_left_is_exit_11(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    sink = LineSink.open(str(fifo), "--output", append=False)
    os.close(r)
    sink.write(LINE % 1)
    with pytest.raises(OutputError) as err:
        sink.flush()
    assert err.value.code == 11
    assert err.value.message == f"writing to {fifo} failed: Broken pipe"


CUT_SHORT = r"""
import json, os, resource, signal, sys
from sigtrace.output.sink import LineSink

path, append = sys.argv[1], sys.argv[2] == "append"
LINE = '{"n": %d, "pad": "' + "x" * 280 + '"}\n'
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
sink = LineSink.open(path, "--output", append=append, keep_going=True)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))  # 3 lines and a third of the 4th
sink.write("".join(LINE % n for n in range(5)))
sink.flush()
size_after_failure = os.path.getsize(path)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
sink.write(LINE % 5)
sink.flush()
print(json.dumps({"size": size_after_failure, "dropped": sink.dropped, "error": sink.error}))
"""


@pytest.mark.parametrize("mode", ["append", "truncate"])
def test_a_write_cut_short_is_taken_back_to_the_last_whole_line(tmp_path: Path, mode: str) -> None:
    out = tmp_path / "out.jsonl"
    r = subprocess.run(
        [sys.executable, "-c", CUT_SHORT, str(out), mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    got = json.loads(r.stdout)
    # The kernel wrote 1000 bytes: three lines and 100 bytes of the fourth, then EFBIG.
    assert got == {"size": 900, "dropped": 2, "error": None}
    # No half line, and no hole where the cut bytes were: the next line follows the third.
    assert out.read_text() == "".join(LINE % n for n in (0, 1, 2, 5))


def test_the_loss_report_waits_until_writing_works(tmp_path: Path, full: LineSink) -> None:
    """The daemon's `lost` record: not written (and not counted) while the output fails,
    written once with the whole count when it works again."""
    full.keep_going = True
    accounted: list[dict] = []
    session = SimpleNamespace(
        correlator=Correlator(Clock().iso),
        stamped=lambda rec: rec.update(node="n1") or rec,  # in place, as Session does
        account=accounted.append,
        tickers=[],
        on_finish=[],
    )
    report = OutputLossReport(session, full, lambda rec: json.dumps(rec) + "\n")  # type: ignore[arg-type]
    assert session.tickers == [(1.0, report.report, report.due)]
    assert session.on_finish == [report.report] and report.due() is None
    for n in range(3):
        full.write(LINE % n)
    full.flush()
    report.report()
    report.report()
    assert (full.dropped, full.unreported, accounted) == (3, 3, [])

    good = tmp_path / "out.jsonl"  # the disk has room again
    full.fd = os.open(good, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    report.report()
    (lost,) = [json.loads(line) for line in good.read_text().splitlines()]
    assert {k: lost[k] for k in ("type", "count", "reason", "node")} == {
        "type": "lost",
        "count": 3,
        "reason": "output",
        "node": "n1",
    }
    assert full.unreported == 0 and full.error is None and accounted == [lost]
    report.report()  # nothing more to say
    assert good.read_text().count("\n") == 1
    os.close(full.fd)
