"""BCC anchor for tests/bench/run_bench.py: one TRACEPOINT_PROBE on signal:signal_generate,
a perf buffer, one text line per signal (like BCC's own tools). Runs under the system
python3 (python3-bpfcc); BCC compiles it at start, which is part of its time to tracing.

usage: python3 bcc_anchor.py [--all] [--cflag FLAG]...
Prints "ready" (flushed) once attached; on SIGTERM/SIGINT prints "lost N" to stderr and exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from bcc import BPF  # type: ignore[import-not-found]

DEFAULT_SIGNALS = (1, 2, 3, 9, 15)  # HUP INT QUIT KILL TERM, as sigtrace's default

PROGRAM = r"""
struct data_t {
    u32 pid;
    u32 tpid;
    int sig;
    int result;
    char comm[16];
};
BPF_PERF_OUTPUT(events);

TRACEPOINT_PROBE(signal, signal_generate) {
    int sig = args->sig;
    if (sig < 1 || sig > 64 || !((SIG_MASK >> (sig - 1)) & 1))
        return 0;
    struct data_t d = {};
    d.pid = bpf_get_current_pid_tgid() >> 32;
    d.tpid = args->pid;
    d.sig = sig;
    d.result = args->result;
    bpf_get_current_comm(&d.comm, sizeof(d.comm));
    events.perf_submit(args, &d, sizeof(d));
    return 0;
}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--all", action="store_true", help="every signal, not the default five")
    ap.add_argument("--cflag", action="append", default=[])
    ap.add_argument("--pages", type=int, default=64, help="perf buffer pages per CPU")
    opts = ap.parse_args()

    mask = (1 << 64) - 1 if opts.all else sum(1 << (s - 1) for s in DEFAULT_SIGNALS)
    text = PROGRAM.replace("SIG_MASK", f"{mask:#x}ULL")
    b = BPF(text=text, cflags=opts.cflag)  # attaches the TRACEPOINT_PROBE
    stopping = False
    lost = 0

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    def on_lost(n: int) -> None:
        nonlocal lost
        lost += n

    out = sys.stdout
    events = b["events"]

    def on_event(_cpu: int, data: int, _size: int) -> None:
        e = events.event(data)
        out.write(f"{e.pid} {e.comm.decode(errors='replace')} {e.sig} {e.tpid} {e.result}\n")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    events.open_perf_buffer(on_event, page_cnt=opts.pages, lost_cb=on_lost)
    out.write("ready\n")
    out.flush()
    while not stopping:
        b.perf_buffer_poll(timeout=100)
    b.perf_buffer_consume()
    out.flush()
    print(f"lost {lost}", file=sys.stderr, flush=True)
    # The kernel detaches on exit; skipping BCC's own teardown avoids its noisy __del__.
    os._exit(0)


if __name__ == "__main__":
    main()
