"""Re-records the committed trace_pipe lines (root, real kernel, tracefs):
`sudo .venv/bin/python tests/data/tracefs/record.py`.

Starts known workloads, opens the tracefs backend with --pid filters naming them (so the
instance is configured exactly as in a run), sends the scenarios' signals, and saves:
  scenarios.trace        the instance's trace_pipe lines that concern the workloads
  scenarios.exits.json   the process-events exits of those processes
  scenarios.status.json  /proc/<pid>/status of each process, read before its signals, and
                         the inode of its pid namespace
  scenarios.pids.json    which pid plays which part
  procevents.bin         raw process-events messages of two exits (143, and exit 3)
The unit tests replay them through tracefs_parse and tracefs_records without root.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from sigtrace.backends.tracefs import TracefsBackend  # noqa: E402
from sigtrace.backends.tracefs_parse import parse_line  # noqa: E402
from sigtrace.config import TraceConfig  # noqa: E402

PY = sys.executable
HANDLER = "import signal,sys; signal.signal(signal.SIGTERM, lambda *a: print('got', flush=True))"
WAIT = "; sys.stdin.readline(); sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)"
NOBODY = ("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups")


def python(code: str, *args: str, **kw: object) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **kw
    )


def status(pid: int) -> dict:
    ns = os.readlink(f"/proc/{pid}/ns/pid")
    return {"status": Path(f"/proc/{pid}/status").read_text(), "pidns": ns}


def main() -> None:
    me = os.getpid()
    init_wrapper = subprocess.Popen(
        ["unshare", "--pid", "--fork", "sh", "-c", "sleep 300 & read x; kill -TERM 1; wait"],
        stdin=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.3)
    init = int(subprocess.check_output(["pgrep", "-P", str(init_wrapper.pid)]).split()[0])
    init_child = int(subprocess.check_output(["pgrep", "-P", str(init)]).split()[0])
    handler = python(HANDLER + WAIT)
    ignorer = python("import signal,sys; signal.signal(signal.SIGTERM, signal.SIG_IGN)" + WAIT)
    blocker = python("import signal,sys; signal.pthread_sigmask(signal.SIG_BLOCK, {15})" + WAIT)
    termed = subprocess.Popen(["sleep", "300"])
    killed = subprocess.Popen(["sleep", "300"])
    leader = python(HANDLER + WAIT, process_group=0)
    members = [leader] + [python(HANDLER + WAIT, process_group=leader.pid) for _ in range(2)]
    time.sleep(0.5)  # python started and set its dispositions
    procs = {
        "recorder": me,
        "init": init,
        "init_child": init_child,
        "handler": handler.pid,
        "ignorer": ignorer.pid,
        "blocker": blocker.pid,
        "termed": termed.pid,
        "killed": killed.pid,
        "pgrp": [m.pid for m in members],
    }
    pids = [me, init, init_child, handler.pid, ignorer.pid, blocker.pid, termed.pid, killed.pid]
    pids += procs["pgrp"]
    statuses = {str(p): status(p) for p in pids}
    cfg = TraceConfig(signals=frozenset({9, 15}), pids=tuple(pids), syscalls=True)  # the pgrp call
    backend = TracefsBackend(cfg)
    backend.open()
    assert backend.instance is not None and backend.events is not None
    try:
        assert init_wrapper.stdin is not None
        init_wrapper.stdin.write("go\n")  # the init's own kill -TERM 1: ignored
        init_wrapper.stdin.flush()
        time.sleep(0.2)
        os.kill(init, signal.SIGTERM)  # from the host: ignored too
        os.kill(handler.pid, signal.SIGTERM)
        assert handler.stdout is not None and handler.stdout.readline() == "got\n"
        os.kill(ignorer.pid, signal.SIGTERM)
        os.kill(blocker.pid, signal.SIGTERM)
        os.kill(blocker.pid, signal.SIGTERM)  # merged with the pending one
        os.kill(termed.pid, signal.SIGTERM)
        termed.wait()
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        os.kill(-leader.pid, signal.SIGTERM)
        for m in members:
            assert m.stdout is not None and m.stdout.readline() == "got\n"
        nobody = subprocess.Popen([*NOBODY, "kill", "-TERM", str(handler.pid)])
        nobody.wait()
        procs["eperm_sender"] = nobody.pid
        pids.append(nobody.pid)
        os.kill(init, signal.SIGKILL)  # 137, and the namespace teardown kills init_child
        init_wrapper.wait()
        for p in (handler, ignorer, blocker, *members):
            assert p.stdin is not None
            p.stdin.write("\n")
            p.stdin.flush()
            p.wait()
        time.sleep(0.3)
        raw = b""
        while chunk := backend.instance.read():
            raw += chunk
        exits = backend.events.read()
    finally:
        backend.close()
    wanted = set(pids)
    lines = []
    for line in raw.decode().splitlines():
        p = parse_line(line)
        if p and (p.get("common_pid") in wanted or p.get("pid") in wanted):
            lines.append(line)
    (HERE / "scenarios.trace").write_text("\n".join(lines) + "\n")
    mine = [e._asdict() for e in exits if e.tgid in wanted]
    (HERE / "scenarios.exits.json").write_text(json.dumps(mine, indent=1) + "\n")
    (HERE / "scenarios.status.json").write_text(json.dumps(statuses, indent=1) + "\n")
    (HERE / "scenarios.pids.json").write_text(json.dumps(procs, indent=1) + "\n")
    print(f"{len(lines)} lines, {len(mine)} exits")


def procevents_sample() -> None:
    import socket

    from sigtrace.backends.procevents import ProcEvents, decode

    events = ProcEvents()
    termed = subprocess.Popen(["sleep", "300"])
    time.sleep(0.05)
    termed.send_signal(signal.SIGTERM)
    termed.wait()
    three = subprocess.Popen(["sh", "-c", "exit 3"])
    three.wait()
    time.sleep(0.05)
    kept = []
    while True:
        try:
            data = events.sock.recv(1 << 16, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        if any(e.tgid in (termed.pid, three.pid) for e in decode(data)[0]):
            kept.append(data)
    events.close()
    (HERE / "procevents.bin").write_bytes(b"".join(kept))
    pids = {"termed": termed.pid, "exit3": three.pid}
    (HERE / "procevents.pids.json").write_text(json.dumps(pids, indent=1) + "\n")


if __name__ == "__main__":
    main()
    procevents_sample()
