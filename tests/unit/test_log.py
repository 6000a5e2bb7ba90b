"""The daemon's own log lines: text as before, or JSON lines with a level, filtered by level."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import pytest

from sigtrace.log import Log

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def test_text_lines_keep_the_old_form_and_name_levels_above_info() -> None:
    out = io.StringIO()
    log = Log("sigtrace daemon", "text", "info", out)
    log.info("backend core: all probes passed", backend="core")
    log.warning("docker: no answer")
    log.debug("not shown")
    assert out.getvalue().splitlines() == [
        "sigtrace daemon: backend core: all probes passed",
        "sigtrace daemon: warning: docker: no answer",
    ]


def test_json_lines_carry_time_level_logger_msg_and_fields() -> None:
    out = io.StringIO()
    log = Log("sigtrace daemon", "json", "debug", out)
    log.debug("following 2 new cgroup(s)", cgroups=2)
    log.error("evil \x1b[2J name")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert TIME.match(first["time"])
    assert {k: v for k, v in first.items() if k != "time"} == {
        "level": "debug",
        "logger": "sigtrace daemon",
        "msg": "following 2 new cgroup(s)",
        "cgroups": 2,
    }
    assert second["level"] == "error" and second["msg"] == "evil \x1b[2J name"
    assert "\x1b" not in out.getvalue()  # JSON-escaped on the wire


@pytest.mark.parametrize("level", ["warning", "error"])
def test_levels_below_the_threshold_are_left_out(level: str) -> None:
    out = io.StringIO()
    log = Log("x", "json", level, out)
    log.info("i")
    log.warning("w")
    log.error("e")
    got = [json.loads(line)["level"] for line in out.getvalue().splitlines()]
    assert got == (["warning", "error"] if level == "warning" else ["error"])


def test_a_daemons_fatal_error_is_one_json_line_with_its_exit_code() -> None:
    cmd = [sys.executable, "-m", "sigtrace", "daemon", "--log-format", "json", "--signal", "NOPE"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.splitlines()
    rec = json.loads(line)
    assert (rec["level"], rec["exit_code"], rec["logger"]) == ("error", 2, "sigtrace daemon")
    assert "unknown signal" in rec["msg"]
    # text (the default) keeps every command's `sigtrace: <what>`
    r = subprocess.run(cmd[:4] + cmd[6:], capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 2 and r.stderr.startswith("sigtrace: unknown signal")


def test_bad_level_is_bad_input() -> None:
    cmd = [sys.executable, "-m", "sigtrace", "daemon", "--log-level", "loud"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 2 and r.stderr.startswith("sigtrace: ") and "loud" in r.stderr
