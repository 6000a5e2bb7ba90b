"""Text from traced processes stays inert, and two sigtraces trace the same signal at once.

A real process names itself with an ESC sequence, a newline and a byte that is not UTF-8,
and runs with a cmdline of ANSI escapes, a newline, invalid UTF-8 and 1 MB of arguments. It
is sent a SIGTERM while a JSONL tracer and a text tracer both run: the JSONL stays one JSON
object per line, the text shows every such byte escaped on its one line, and the cmdline
ends with the documented cut mark instead of being cut silently.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sigtrace.procfs import CMDLINE_MAX, CUT_MARK
from tests.tracing import Tracer, one, signals, wait_for

COMM = b"\x1b[2Jev\nil\xff"  # 11 bytes: within the kernel's 15 for a task name
ARGS = [b"\x1b[31mred\x1b[0m", b"line1\nline2", b"bad\xff\xfeutf8"]
ARGS += [b"A" * (100 << 10)] * 10  # 1 MB in all; each below MAX_ARG_STRLEN (128 KiB)
VICTIM = r"""
import os, signal, sys
signal.signal(signal.SIGTERM, lambda *_: os.write(1, b"got\n"))
with open("/proc/self/comm", "wb") as f:
    f.write(COMM)
os.write(1, b"ready\n")
sys.stdin.read()
""".replace("COMM", repr(COMM))


def test_hostile_comm_and_cmdline_stay_inert_in_two_tracers_at_once(tmp_path: Path) -> None:
    args = ["--signal", "TERM", "--no-syscalls"]
    text = Tracer(args, tmp_path / "t.txt", tmp_path / "t.err", command=("--format", "text"))
    jsonl = Tracer(args, tmp_path / "t.jsonl", tmp_path / "j.err")
    victim = None
    try:
        jsonl.wait_started()
        wait_for(lambda: "tracing " in (tmp_path / "t.txt").read_text(), what="text tracer live")
        victim = subprocess.Popen(
            [sys.executable.encode(), b"-c", VICTIM.encode(), *ARGS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert victim.stdout is not None and victim.stdout.readline() == b"ready\n"
        os.kill(victim.pid, signal.SIGTERM)
        assert victim.stdout.readline() == b"got\n"
        time.sleep(0.5)  # the tracers read /proc/<pid>/cmdline while it is alive
        records = jsonl.stop()
        text.proc.send_signal(signal.SIGTERM)
        assert text.proc.wait(5) == 0, text.stderr()
    finally:
        for t in (jsonl, text):
            t.close()
        if victim is not None:
            victim.kill()
            victim.wait()

    # JSONL: every line one object (Tracer.stop parsed them); the hostile fields intact.
    sig = one(signals(records, target_pid=victim.pid, signo=signal.SIGTERM))
    target = sig["target"]
    assert target["comm"] == "\\x1b[2Jev\\x0ail\\xff"  # escaped before JSON sees it
    cmdline = target["cmdline"]
    assert cmdline.endswith(CUT_MARK), cmdline[-80:]
    assert len(cmdline.encode()) <= CMDLINE_MAX * 4 + len(CUT_MARK.encode())
    assert "\\x1b[31mred\\x1b[0m line1\\x0aline2 bad\\xff\\xfeutf8 AAAA" in cmdline
    assert "\x1b" not in cmdline and "\n" not in cmdline
    raw = (tmp_path / "t.jsonl").read_bytes()
    assert b"\x1b" not in raw and raw.count(b"\n") == len(records)

    # Text: the signal on one line, every hostile byte escaped, no raw ESC anywhere.
    out = (tmp_path / "t.txt").read_text()
    assert "\x1b" not in out
    lines = [ln for ln in out.splitlines() if f"({victim.pid}) delivered" in ln]
    assert len(lines) == 1, out
    assert "\\x1b[2Jev\\x0ail\\xff" in lines[0], lines[0]
    json.dumps(records)  # and the records survive a round trip
