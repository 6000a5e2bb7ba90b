"""Output that fails, on the real machine: a path that cannot be opened (exit 2, before anything
is loaded), a full device or a disk that fills mid-run (exit 11, the kernel side detached, the
file ending in a whole line), stdout's reader gone (`| head -1`: 141, quiet), and the daemon on
a disk that fills and empties again (it counts, reports and keeps every line whole).

The full disk is a real one: a 64 KiB tmpfs, filled up by a file the test then deletes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.root.helpers import NOBODY, flood
from tests.tracing import REPO, parse_lines, scrape_metrics, sigtrace_cmd, wait_for
from tests.tracing import run_sigtrace as run

if TYPE_CHECKING:
    from tests.root.helpers import Agents

ENOSPC = os.strerror(errno.ENOSPC)


def assert_error(r: subprocess.CompletedProcess[str], code: int, line: str) -> None:
    assert (r.returncode, r.stderr) == (code, line + "\n"), r.stderr


# --- a path that cannot be opened: bad input, found before a backend is chosen ---------------
# (with --backend auto, sigtrace logs its choice first: one line means it never got that far)


@pytest.mark.parametrize("command", [("--duration", "1"), ("daemon",)], ids=["trace", "daemon"])
def test_an_output_in_a_missing_directory_is_bad_input(command: tuple[str, ...]) -> None:
    r = run(*command, "-o", "/nonexistent/dir/x.jsonl")
    line = "sigtrace: cannot open --output /nonexistent/dir/x.jsonl: No such file or directory"
    assert_error(r, 2, line)
    assert r.stdout == ""


def test_an_output_that_is_a_directory_is_bad_input(tmp_path: Path) -> None:
    r = run("-o", str(tmp_path), "--duration", "1")
    line = f"sigtrace: Invalid value for '--output' / '-o': File '{tmp_path}' is a directory."
    assert_error(r, 2, line)


def test_a_save_raw_path_that_cannot_be_opened_is_bad_input() -> None:
    r = run("--save-raw", "/nonexistent/x.raw", "--duration", "1")
    assert_error(
        r, 2, "sigtrace: cannot open --save-raw /nonexistent/x.raw: No such file or directory"
    )


def test_an_unwritable_output_is_bad_input_before_privileges_are_checked() -> None:
    with tempfile.TemporaryDirectory(prefix="output-failures-", dir="/tmp") as d:
        os.chmod(d, 0o755)  # root's: nobody may look in, not create
        out = f"{d}/x.jsonl"
        r = run("-o", out, "--duration", "1", prefix=NOBODY)
    assert_error(r, 2, f"sigtrace: cannot open --output {out}: Permission denied")


# --- a write that fails mid-run: exit 11 ------------------------------------------------------


def test_a_full_device_is_exit_11_in_one_line() -> None:
    t0 = time.monotonic()
    r = run("--backend", "core", "-o", "/dev/full", "--duration", "20")
    assert_error(r, 11, f"sigtrace: writing to /dev/full failed: {ENOSPC}")
    assert time.monotonic() - t0 < 10, "it ran on after its output failed"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, unmounted at the end."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "output-failures", mnt], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", mnt], check=True)


def fill(disk: Path) -> Path:
    """Takes every free block of `disk`; deleting the returned file gives them back."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    with contextlib.suppress(OSError), open(filler, "ab", buffering=0) as f:
        while True:  # the last partial page
            f.write(b"\0")
    return filler


def bpf_ids(pid: int) -> set[str]:
    """The BPF programs and links process `pid` holds (from its fds' fdinfo)."""
    ids = set()
    fdinfo = Path(f"/proc/{pid}/fdinfo")
    for fd in fdinfo.iterdir():
        with contextlib.suppress(OSError):
            fields = dict(line.split(":", 1) for line in fd.read_text().splitlines() if ":" in line)
            if "link_id" in fields:
                ids.add(f"link {fields['link_id'].strip()}")
            elif "prog_id" in fields:
                ids.add(f"prog {fields['prog_id'].strip()}")
    return ids


def loaded_bpf() -> set[str]:
    out = set()
    for kind in ("prog", "link"):
        r = subprocess.run(["bpftool", "-j", kind, "list"], capture_output=True, check=True)
        out |= {f"{kind} {item['id']}" for item in json.loads(r.stdout or b"[]")}
    return out


def wait_for_file_line(path: Path, proc: subprocess.Popen[bytes]) -> None:
    def started() -> bool:
        assert proc.poll() is None, f"sigtrace exited {proc.returncode}"
        return path.exists() and "\n" in path.read_text()

    wait_for(started, what=f"the start record in {path}")


def test_a_disk_that_fills_mid_run_ends_in_a_whole_line_and_detaches(
    small_disk: Path, agents: Agents, tmp_path: Path
) -> None:
    target = agents("USR1=ignore")
    out = small_disk / "out.jsonl"
    err = tmp_path / "err"
    with open(err, "wb") as errf:
        args = ["--backend", "core", "--signal", "USR1", "--pid", str(target.pid), "-o", str(out)]
        proc = subprocess.Popen(sigtrace_cmd(*args), stderr=errf, cwd=REPO)
    try:
        wait_for_file_line(out, proc)
        held = bpf_ids(proc.pid)
        assert any(i.startswith("prog") for i in held) and any(i.startswith("link") for i in held)
        fill(small_disk)
        with flood(target.pid, signal.SIGUSR1, seconds=20):
            code = proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (code, err.read_text()) == (
        11,
        f"sigtrace: writing to {out} failed: {ENOSPC}\n",
    )
    records = parse_lines(out.read_text())  # whole lines only: the cut one was taken back
    assert records[0]["type"] == "start" and records[-1]["type"] == "signal"
    assert len(records) > 2
    # Detached: every program and link it held is gone from the kernel (freed a moment after).
    wait_for(lambda: not held & loaded_bpf(), timeout=5, what=f"{held} to be unloaded")


# --- stdout's reader gone ---------------------------------------------------------------------


def test_stdout_closed_by_head_ends_quietly_with_141(agents: Agents) -> None:
    target = agents("USR1=ignore")
    cmd = " ".join(
        [*sigtrace_cmd("--backend", "core", "--signal", "all", "--format", "jsonl"),
         "--pid", str(target.pid)]
    )  # fmt: skip
    script = f'{cmd} | head -1; echo "status ${{PIPESTATUS[*]}}" >&2'
    with flood(target.pid, signal.SIGUSR1, seconds=20):
        r = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=15, cwd=REPO
        )
    assert r.stderr == "status 141 0\n"  # nothing from sigtrace: no message, no traceback
    assert json.loads(r.stdout)["type"] == "start"


# --- the daemon: it keeps going, counts, reports, and never writes half a line --------------


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read().decode()


BURST = 200  # signal records: some 120 KiB of JSONL, twice the disk, and no ring overrun


def burst(pid: int, count: int) -> None:
    code = "import os, sys\nfor _ in range(int(sys.argv[2])): os.kill(int(sys.argv[1]), 10)"
    subprocess.run([sys.executable, "-c", code, str(pid), str(count)], check=True, timeout=10)


def test_the_daemon_counts_what_a_full_disk_refused_and_reports_it_after(
    small_disk: Path, agents: Agents, tmp_path: Path
) -> None:
    target, sender = agents("USR1=ignore"), agents()
    out = small_disk / "out.jsonl"
    err = tmp_path / "err"
    with open(err, "wb") as errf:
        args = ["daemon", "--node-name", "n1", "--metrics", ":0", "--signal", "USR1",
                "--pid", str(target.pid), "-o", str(out)]  # fmt: skip
        proc = subprocess.Popen(sigtrace_cmd(*args), stderr=errf, cwd=REPO)
    try:
        wait_for_file_line(out, proc)
        log = err.read_text()
        assert "metrics on http://0.0.0.0:" in log, log  # `:PORT`: every address
        base = log.split("metrics on ")[1].split("/metrics")[0]

        filler = fill(small_disk)
        burst(target.pid, BURST)

        def metric(name: str, **labels: str) -> float:
            samples = scrape_metrics(err.read_text())[name]
            return sum(v for lb, v in samples if labels.items() <= lb.items())

        wait_for(lambda: metric("sigtrace_events_total", type="signal") == BURST, what="the burst")
        wait_for(lambda: metric("sigtrace_output_errors_total") > 0, what="output errors")
        assert proc.poll() is None, "the daemon stopped when its disk filled"
        assert metric("sigtrace_output_failing") == 1
        assert metric("sigtrace_tracing_up") == 1
        status, body = http_get(base + "/healthz")
        assert status == 200 and body.startswith(f"degraded: writing to {out} fails ({ENOSPC}); ")

        filler.unlink()  # room again
        sender.run(f"kill {target.pid} USR1")  # a record after the outage: written

        def reported() -> bool:
            recs = parse_lines(out.read_text())
            return any(r["type"] == "lost" for r in recs) and any(
                r["type"] == "signal" and r["sender"]["pid"] == sender.pid for r in recs
            )

        wait_for(reported, what="the lost record and the signal sent after the outage")
        samples = scrape_metrics(err.read_text())
        status, body = http_get(base + "/healthz")
        assert (status, body) == (200, "ok\n")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
    assert code == 0

    records = parse_lines(out.read_text())  # every line whole JSON
    lost = [r for r in records if r["type"] == "lost"]
    assert [(r["reason"], r["node"]) for r in lost] == [("output", "n1")]
    dropped = samples["sigtrace_output_errors_total"][0][1]
    assert lost[0]["count"] == dropped
    assert samples["sigtrace_output_failing"][0][1] == 0
    assert samples["sigtrace_lost_records_total"][0][1] == 0  # not the ring buffer's
    # Every record the daemon made is either in the file or in the count.
    stop = records[-1]
    assert stop["type"] == "stop" and stop["lost"] == 0
    written = len(records) - 2  # start and stop are not in `records`
    assert sum(stop["records"].values()) == written + dropped
    log = err.read_text()
    assert log.count(f"writing to {out} failed: {ENOSPC}; still tracing") == 1, log
    assert log.count(f"writing to {out} works again; {int(dropped)} records not written") == 1
    assert "Traceback" not in log
