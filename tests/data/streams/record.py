"""Re-records the committed raw streams (root, real kernel): `python tests/data/streams/record.py`.

Each scenario runs a known workload under `sigtrace --save-raw`; the unit tests replay the
recordings without root and assert the kernel's verdicts on them. The workloads write the
pids the tests need into <name>.pids.json beside the recording.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def _tracer(name: str, sigs: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sigtrace",
            "--format",
            "jsonl",
            "--signal",
            sigs,
            "--save-raw",
            str(HERE / f"{name}.raw"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert '"type":"start"' in first, first
    return proc


def _finish(proc: subprocess.Popen, name: str, pids: dict) -> None:
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    (HERE / f"{name}.pids.json").write_text(json.dumps(pids, indent=1) + "\n")


def pid1() -> None:
    """A pid-namespace init without handlers: SIGTERM and SIGKILL from inside (both dropped),
    SIGTERM from the host (dropped), SIGKILL from the host (kills it: 137)."""
    t = _tracer("pid1", "TERM,KILL")
    init = subprocess.Popen(
        ["unshare", "--pid", "--fork", "sh", "-c", "kill -TERM 1; kill -KILL 1; exec sleep 30"],
    )
    time.sleep(0.5)
    host = int(subprocess.check_output(["pgrep", "-P", str(init.pid)]).split()[0])
    os.kill(host, signal.SIGTERM)
    time.sleep(0.2)
    os.kill(host, signal.SIGKILL)
    init.wait()
    _finish(t, "pid1", {"init": host, "tracer_host_sender": os.getpid()})


def dispositions() -> None:
    """Handler, SIG_IGN, blocked then merged, kill(-pgid) over three, EPERM, exit 0/143/137,
    and a SIGKILL to a process with a SIGTERM handler (its `caught`)."""
    t = _tracer("dispositions", "TERM,KILL,USR1,HUP")
    handler = subprocess.Popen(["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"])
    ign = subprocess.Popen(["sh", "-c", "trap '' HUP; sleep 0.6"])
    blocked = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal,time; signal.pthread_sigmask(signal.SIG_BLOCK,[signal.SIGUSR1]);"
            "time.sleep(0.6)",
        ]
    )
    leader = subprocess.Popen(["sleep", "30"], process_group=0)
    members = [subprocess.Popen(["sleep", "30"], process_group=leader.pid) for _ in range(2)]
    victim = subprocess.Popen(["sleep", "30"])
    trapper = subprocess.Popen(["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"])
    time.sleep(0.4)
    os.kill(handler.pid, signal.SIGTERM)
    os.kill(ign.pid, signal.SIGHUP)
    os.kill(blocked.pid, signal.SIGUSR1)
    os.kill(blocked.pid, signal.SIGUSR1)
    os.killpg(leader.pid, signal.SIGTERM)
    subprocess.run(
        [
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "kill",
            "-TERM",
            str(victim.pid),
        ],
        capture_output=True,
        check=False,
    )
    os.kill(victim.pid, signal.SIGKILL)
    os.kill(trapper.pid, signal.SIGKILL)
    for p in (handler, ign, blocked, leader, victim, trapper, *members):
        p.wait()
    _finish(
        t,
        "dispositions",
        {
            "sender": os.getpid(),
            "handler": handler.pid,
            "ign": ign.pid,
            "blocked": blocked.pid,
            "pgrp": leader.pid,
            "members": [leader.pid] + [m.pid for m in members],
            "victim": victim.pid,
            "trapper": trapper.pid,
        },
    )


if __name__ == "__main__":
    for scenario in (pid1, dispositions):
        scenario()
        print(f"recorded {scenario.__name__}")
