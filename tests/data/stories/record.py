"""Re-records the committed termination stories (root, real kernel, Docker):
`python tests/data/stories/record.py [SCENARIO ...]`.

Each scenario starts a container from the tests/images images, runs
`sigtrace --container NAME --format jsonl` on it, stops or kills it, and writes the records
to <scenario>.jsonl (live `verdict` records are left out: the unit tests make their own).
tests/unit/test_stories.py replays them without root. `oom.jsonl` is recorded too when the
kernel's OOM killer fires in a `--memory 8m` container (it does here, cgroup v1).
`ptrace-*` scenarios trace with `--backend ptrace`, which never sees SIGKILL.

`execform-nocaught.jsonl` and `noforward-nocaught.jsonl` are not re-made either: recorded
before exit and SIGKILL records carried `caught` (as a backend that cannot read it still
writes them), they keep the stories honest where who had a handler is unknown.
`slowstop-pidwrap.jsonl` is not re-made here: a slowstop recorded (bcc backend) when the host's
pids had wrapped around (pid_max 32768) between PID 1's start and the stop.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
GRACE_S = 2
LABEL = "sigtrace.test=1"


def docker(*args: str, check: bool = True) -> str:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout.strip()


def run(name: str, image: str, *args: str, flags: tuple[str, ...] = ()) -> str:
    full = f"st-rec-{name}-{secrets.token_hex(3)}"
    docker("run", "-d", "--pull", "never", "--name", full, "--label", LABEL, *flags, image, *args)
    return full


def wait_log(name: str, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (
        text
        not in subprocess.run(
            ["docker", "logs", name], capture_output=True, text=True, check=False
        ).stdout
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: no {text!r} in its logs")
        time.sleep(0.05)


def trace(
    names: list[str],
    out: Path,
    action: Callable[[], None],
    backend: str = "auto",
    before_s: float = 0.0,
) -> None:
    cmd = [sys.executable, "-m", "sigtrace", "--format", "jsonl", "--backend", backend]
    for n in names:
        cmd += ["--container", n]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert '"type":"start"' in first, first
    try:
        time.sleep(before_s)
        action()
        for n in names:
            docker("wait", n, check=False)
        time.sleep(1.0)  # the namespace teardown and the last exits
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=20)
    lines = [first, *rest.splitlines(keepends=True)]
    kept = [ln for ln in lines if json.loads(ln)["type"] != "verdict"]
    out.write_text("".join(kept))
    for n in names:
        docker("rm", "-f", n, check=False)
    print(f"{out.name}: {len(kept)} records", file=sys.stderr)


def stop_scenario(
    scenario: str, image: str, flags: tuple[str, ...] = (), **trace_opts: Any
) -> None:
    name = run(scenario, image, flags=flags)
    wait_log(name, "ready")
    stop = lambda: docker("stop", "-t", str(GRACE_S), name)  # noqa: E731
    trace([name], HERE / f"{scenario}.jsonl", stop, **trace_opts)


def kill(scenario: str = "kill", **trace_opts: Any) -> None:
    name = run(scenario, "st-execform")
    wait_log(name, "ready")
    trace([name], HERE / f"{scenario}.jsonl", lambda: docker("kill", name), **trace_opts)


def oom(scenario: str = "oom", **trace_opts: Any) -> None:
    # A busybox memory hog: `tail` keeps the last 10 lines of /dev/zero, one endless line.
    script = "echo ready; while [ ! -e /go ]; do sleep 0.1; done; head -c 64m /dev/zero | tail"
    flags = ("--memory", "8m", "--memory-swap", "8m")
    name = run(scenario, "st-busybox", "sh", "-c", script, flags=flags)
    wait_log(name, "ready")
    go = lambda: docker("exec", name, "touch", "/go")  # noqa: E731
    trace([name], HERE / f"{scenario}.jsonl", go, **trace_opts)


def two() -> None:
    """Two containers stopped at the same moment under one tracer: interleaved stories."""
    a = run("two-shell", "st-shellform")
    b = run("two-exec", "st-execform")
    wait_log(a, "ready")
    wait_log(b, "ready")
    trace([a, b], HERE / "two.jsonl", lambda: docker("stop", "-t", str(GRACE_S), a, b))


def hops(scenario: str, entrypoint: str, *flags: str, **trace_opts: Any) -> None:
    """A hop-by-hop story: st-hops with `entrypoint` as PID 1 (see tests/images/st-hops)."""
    stop_scenario(scenario, "st-hops", ("--entrypoint", f"/bin/{entrypoint}", *flags), **trace_opts)


# Hop-by-hop stories (tests/images/st-hops): who had work to do, and whether the stop reached it.
HOPS: dict[str, tuple[str, ...]] = {
    "wrapexit": ("wrapexit.sh",),  # PID 1 exits on TERM; server.sh dies in the teardown
    "forwardwait": ("forwardwait.sh",),  # PID 1 forwards and waits: graceful
    "twolevel": ("outer.sh",),  # sh -> sh -> server: the middle one dies of TERM
    "pgrp": ("pgrp.sh",),  # setsid + kill(-pgid), as dumb-init does
    "blocked": ("blockterm",),  # SIGTERM blocked in PID 1 until SIGKILL
    "tini-sigign": ("sigign.sh", "--init"),  # tini forwards to an app with SIG_IGN
}


def quit_sigign(scenario: str = "quit-sigign", **trace_opts: Any) -> None:
    script = "trap '' QUIT; echo ready; while :; do sleep 1; done"
    flags = ("--entrypoint", "/bin/sh", "--stop-signal", "SIGQUIT")
    name = run(scenario, "st-hops", "-c", script, flags=flags)
    wait_log(name, "ready")
    stop = lambda: docker("stop", "-t", str(GRACE_S), name)  # noqa: E731
    trace([name], HERE / f"{scenario}.jsonl", stop, **trace_opts)


SCENARIOS: dict[str, Callable[[], None]] = {
    "shellform": lambda: stop_scenario("shellform", "st-shellform"),
    "execform": lambda: stop_scenario("execform", "st-execform"),
    "tini": lambda: stop_scenario("tini", "st-execform", ("--init",)),
    "sigign": lambda: stop_scenario("sigign", "st-sigign"),
    "noforward": lambda: stop_scenario("noforward", "st-noforward"),
    "slowstop": lambda: stop_scenario("slowstop", "st-slowstop"),
    "kill": kill,
    "oom": oom,
    # ptrace never sees the OOM killer's SIGKILL: the memory cgroup's oom_kill counter tells it
    "ptrace-oom": lambda: oom("ptrace-oom", backend="ptrace"),
    "two": two,
    "ptrace-slowstop": lambda: stop_scenario("ptrace-slowstop", "st-slowstop", backend="ptrace"),
    "ptrace-kill": lambda: kill("ptrace-kill", backend="ptrace"),
    # 1.5 s first: the loop's `sleep` exits before the stop are what show that server.sh (an
    # older pid) ran before it; ptrace does not see the stop's sender, `runc kill`.
    "ptrace-noforward": lambda: stop_scenario(
        "ptrace-noforward", "st-noforward", backend="ptrace", before_s=1.5
    ),
    **{name: (lambda name=name, args=args: hops(name, *args)) for name, args in HOPS.items()},
    "quit-sigign": quit_sigign,  # STOPSIGNAL SIGQUIT, and PID 1 has `trap '' QUIT`
    # ptrace sees no `runc kill` and, stopped at once, no record before the stop: what ran
    # before it is known only from each exit's `caught` (a handler is work to do).
    **{
        f"ptrace-{name}": (lambda name=name: hops(f"ptrace-{name}", *HOPS[name], backend="ptrace"))
        for name in ("wrapexit", "twolevel")
    },
}


def main(names: list[str]) -> None:
    subprocess.run([sys.executable, str(REPO / "tests/images/build.py")], check=True)
    for n in names or list(SCENARIOS):
        SCENARIOS[n]()


if __name__ == "__main__":
    main(sys.argv[1:])
