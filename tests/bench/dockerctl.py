"""The Docker side of the container benches: the docker CLI with a timeout, the containers
they start (the local test images, tests/images), waiting until a container's PID 1 is ready
to be stopped, and removing a run's containers by label, never anyone else's."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DOCKER = "docker"
TRAPS_IN_PID1 = {"st-execform", "st-sigign", "st-noforward"}  # PID 1 itself sets `trap … TERM`
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


@dataclass
class Container:
    i: int
    name: str
    image: str
    expect: str  # the verdict due; "" for a job (none due)
    pid: int = 0  # host pid of PID 1
    error: str = ""
    run_s: float = 0.0
    stop_s: float = 0.0
    stopped: bool = False  # stopped (a job: ended) and removed

    @property
    def job(self) -> bool:
        return not self.expect


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A docker CLI call; a timeout is exit code 124 with a word on stderr, not an exception."""
    try:
        return subprocess.run(
            [DOCKER, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C must not cut a docker call in half
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, 124, "", f"timed out after {timeout} s")


def inspect_pid(c: Container) -> str:
    """c.pid from `docker inspect`, then waits until PID 1 is ready; the error, or ""."""
    r = docker("inspect", "--format", "{{.State.Pid}}", c.name)
    if r.returncode != 0 or not r.stdout.strip().isdigit():
        return f"docker inspect: {r.stderr.strip()[:160]}"
    c.pid = int(r.stdout.strip())
    pid1_ready(c)
    return ""


def pid1_ready(c: Container, timeout: float = 3.0) -> None:
    """Until PID 1 has set its SIGTERM disposition (its images' `trap … TERM`) and started a
    child: a stop before that would get another verdict than the image's."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{c.pid}/status").read_text()
            children = Path(f"/proc/{c.pid}/task/{c.pid}/children").read_text().split()
        except OSError:
            return
        masks = {
            k: int(v, 16) for k, v in re.findall(r"^(SigCgt|SigIgn):\s*([0-9a-f]+)", status, re.M)
        }
        trapped = bool((masks.get("SigCgt", 0) | masks.get("SigIgn", 0)) & SIGTERM_BIT)
        if children and (trapped or c.image not in TRAPS_IN_PID1):
            return
        time.sleep(0.02)


def remove_labelled(label: str, value: str | None, prefix: str = "") -> int:
    """Force-remove the containers whose `label` is `value` (a run's tag,
    "<its pid>-<start time>"), or, when value is None, those left behind by earlier runs
    whose process is gone; either way only names starting with prefix. Returns how many."""
    r = docker(
        "ps",
        "-a",
        "--filter",
        f"label={label}",
        "--format",
        f'{{{{.ID}}}} {{{{.Names}}}} {{{{.Label "{label}"}}}}',
    )
    ids = []
    for line in r.stdout.splitlines():
        cid, name, tag = [*line.split(" ", 2), "", ""][:3]
        if not name.startswith(prefix):
            continue
        if value is not None:
            if tag == value:
                ids.append(cid)
        else:
            owner = tag.split("-", 1)[0]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                ids.append(cid)
    for i in range(0, len(ids), 50):
        docker("rm", "-f", *ids[i : i + 50], timeout=120)
    return len(ids)
