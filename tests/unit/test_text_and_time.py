import io
import json

from sigtrace.escape import printable
from sigtrace.output.jsonl import JsonlWriter
from sigtrace.output.text import TextWriter
from sigtrace.timefmt import Clock


def test_printable_escapes_terminal_controls() -> None:
    assert printable("gunicorn") == "gunicorn"
    assert printable("a\x1b[31mb") == "a\\x1b[31mb"
    assert printable("x\ny\x7f") == "x\\x0ay\\x7f"
    assert printable("evil\u202egpj.exe") == "evil\\u202egpj.exe"  # bidi override


def test_rfc3339_nanoseconds_utc() -> None:
    c = Clock(offset_ns=1_700_000_000_000_000_000)
    assert c.iso(123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert c.iso(1_000_000_001) == "2023-11-14T22:13:21.000000001Z"


def test_jsonl_lines_carry_no_raw_control_characters_from_processes() -> None:
    from sigtrace import wire
    from sigtrace.correlate import Correlator

    evil = wire.Task(0, 0, 7, 7, 7, 7, 1, 0, "a\x1b]0;pwn\x07\u202e\x9b")
    rec = wire.Exit(1, 0, 0, 0, evil)
    buf = io.StringIO()
    w = JsonlWriter(buf)
    for out in Correlator(Clock(0).iso).feed(rec):
        w.write(out)
    w.write({"n": 1})
    text = buf.getvalue()
    assert text.count("\n") == 2 and text.endswith("\n")
    assert all(ch.isprintable() for ch in text.replace("\n", ""))
    comm = json.loads(text.splitlines()[0])["process"]["comm"]
    assert comm == r"a\x1b]0;pwn\x07\u202e\x9b"


def test_text_line_escapes_comm() -> None:
    buf = io.StringIO()
    rec = {
        "time": "2026-01-01T00:00:00.000000000Z",
        "type": "signal",
        "signal": "SIGTERM",
        "sender": {"pid": 1, "ns_pid": 1, "comm": "runc"},
        "target": {"pid": 7, "ns_pid": 1, "comm": "sh\x1b[2J", "pid1": True},
        "outcome": "ignored",
        "reason": "pid1_no_handler",
        "scope": "process",
        "fanout": None,
    }
    TextWriter(buf).write(rec)
    line = buf.getvalue()
    assert "\x1b" not in line
    assert "sh\\x1b[2J(7 ns:1) [pid1]" in line and "ignored (pid1_no_handler)" in line
