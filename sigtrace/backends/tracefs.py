"""The backend for machines without BPF: the kernel's own tracepoints, through tracefs.

A private ftrace instance holds signal_generate/signal_deliver, the kill-family syscall
events, sched_process_exit and oom:mark_victim, with the signal and pid filters in the events'
`filter` files. Its trace_pipe is read as text (tracefs_parse), turned into the same wire
records as the CO-RE backend (tracefs_records), and exits get their wait status from the
process-events connector (procevents). What tracefs cannot give is read from /proc when a
line is handled and listed in each record's `derived`.
"""

from __future__ import annotations

import contextlib
import os
import select
import time

from sigtrace import features, wire
from sigtrace.backends import Emit
from sigtrace.backends.assisted import ProcAssistedBackend
from sigtrace.backends.proctask import CAUGHT_FROM_PROC
from sigtrace.backends.tracefs_instance import (
    Instance,
    and_filters,
    format_fields,
    mount,
    or_filter,
    pid_filter,
    probe_rows,
    remove_stale,
)
from sigtrace.backends.tracefs_parse import parse_line, saved_names
from sigtrace.backends.tracefs_records import TraceLineTranslator
from sigtrace.config import TraceConfig
from sigtrace.errors import BackendError
from sigtrace.signals import SIGKILL

# Lines handled per poll before handing back to the session (a flood must not starve it).
LINES_PER_POLL = 20000
# ftrace's pid → comm/tgid caches are read again at most this often (a few ms each time).
SAVED_NAMES_INTERVAL_NS = 50_000_000
CANNOT_SEE = [
    "the target's handler, blocked mask, tgid, namespace pid and uid, and the sender's "
    "namespace pid and uid: read from /proc when the line is handled, not from the kernel "
    "when the signal was sent (listed in `derived`; null when the process was already gone)",
    "target_state.blocked of a caught signal whose handler was running then (the kernel "
    "blocks a signal in its handler): null",
    "a line names its task (sender) from ftrace's comm and tgid caches, which can still hold "
    "an earlier task with that pid: /proc decides while it runs (`derived`); once it is gone, "
    "its exit or the caches read again name it, else its pid and comm are null",
    "target_state.waiting (sigtimedwait), and si_pid of sigqueue and kernel signals",
    "cgroups: the tracepoints carry none; --container/--pod filter in user space, "
    "from /proc/<pid>/cgroup",
    "--save-raw: there are no binary kernel records to save",
    CAUGHT_FROM_PROC,
]
CANNOT_SEE_PIDS = [
    "--pid: a thread started later joins the in-kernel filter within 0.5 s",
    "--pid: a fan-out's count counts only the signals to traced processes",
]


class TracefsBackend(ProcAssistedBackend):
    name = "tracefs"

    @classmethod
    def probe(cls, config: TraceConfig) -> list[tuple[str, bool, str]]:
        out = []
        root = features.tracefs_root(config.sys_root)
        if root is not None:
            out.append(("tracefs", True, f"{root} mounted"))
        out += probe_rows(config.sys_root)
        root_ok = os.geteuid() == 0
        out.append(("privileges", root_ok, "root" if root_ok else "needs root: run with sudo"))
        net = features.proc_connector_privileges(config.proc_root)
        out.append(("privileges", net.ok, net.detail))
        return out

    def __init__(self, config: TraceConfig) -> None:
        super().__init__(config)
        self.instance: Instance | None = None
        self.builder: TraceLineTranslator | None = None
        self._partial = b""
        self._tids: set[int] = set()
        self._root = ""
        self._names_read_at = 0

    def open(self) -> None:
        self.require_probes()
        root = mount(self.config.sys_root)
        remove_stale(root, self.config.proc_root)
        self._root = root
        facts = self._open_facts(frozenset(self.config.pids))
        self.builder = TraceLineTranslator(
            facts, self.config.signals, self.filters, self._saved_names
        )
        try:
            self._open_events()
            self.instance = Instance(root)
            self.instance.create()
            self._tids = self._pid_tids(remember=True)
            self._configure(self.instance)
            self.instance.open_pipe()
        except BaseException:
            self.close()
            raise

    def _filters(self) -> dict[str, str]:
        """The in-kernel filter of each event that takes the signal or pid filters."""
        cfg, tids = self.config, self._tids

        def pids(fields: tuple[str, ...]) -> str:
            return pid_filter(fields, tids) if cfg.pids else ""

        # A default-fatal signal's delivery shows as SIGKILL: let SIGKILL through.
        deliver_sigs = or_filter("sig", cfg.signals | {SIGKILL})
        return {
            "signal/signal_generate": and_filters(
                or_filter("sig", cfg.signals), pids(("common_pid", "pid"))
            ),
            "signal/signal_deliver": and_filters(deliver_sigs, pids(("common_pid",))),
            "oom/mark_victim": pids(("pid",)),
        }

    def _configure(self, inst: Instance) -> None:
        cfg = self.config
        inst.write("tracing_on", "0")
        inst.write("trace_clock", "mono")  # CLOCK_MONOTONIC: the session's clock, and exits'
        inst.write("options/record-tgid", "1")
        inst.write("options/overwrite", "0")  # a full buffer drops new events and counts them
        inst.write("buffer_percent", "0")  # wake the reader at every event, not at half full
        per_cpu_kb = max(256, cfg.ringbuf_bytes // 1024 // max(1, os.cpu_count() or 1))
        inst.write("buffer_size_kb", str(per_cpu_kb))
        sigs = or_filter("sig", cfg.signals)
        filters = self._filters()
        if cfg.pids and not filters["oom/mark_victim"]:
            self._missing.append("--pid: too many threads for an in-kernel filter")
        inst.enable("signal/signal_generate", filters["signal/signal_generate"])
        inst.enable("signal/signal_deliver", filters["signal/signal_deliver"])
        for name in self._kill_calls(inst.path):
            # Not by pid: a fan-out's count includes targets the sender did not name.
            inst.enable(f"syscalls/sys_enter_{name}", sigs)
            inst.enable(f"syscalls/sys_exit_{name}")
        exit_fields = format_fields(inst.path, "sched", "sched_process_exit") or set()
        exit_filter = "group_dead == 1" if "group_dead" in exit_fields else ""
        inst.enable("sched/sched_process_exit", exit_filter)
        if inst.has_event("oom/mark_victim"):
            inst.enable("oom/mark_victim", filters["oom/mark_victim"])
        else:
            self._missing.append("OOM victims (no oom:mark_victim)")
        inst.write("tracing_on", "1")

    def _saved_names(self, tids: set[int]) -> dict[int, tuple[str | None, int]]:
        """ftrace's pid → comm and pid → tgid caches, read now (TraceLineTranslator.confirm);
        at most every SAVED_NAMES_INTERVAL_NS, else nothing: the tasks stay unnamed."""
        now = time.monotonic_ns()
        if now - self._names_read_at < SAVED_NAMES_INTERVAL_NS:
            return {}
        self._names_read_at = now
        texts = []
        for name in ("saved_cmdlines", "saved_tgids"):
            try:
                with open(os.path.join(self._root, name)) as f:
                    texts.append(f.read())
            except OSError:
                texts.append("")
        return saved_names(texts[0], texts[1], tids)

    def _follow_threads(self) -> None:
        """--pid's processes may start threads: widen the in-kernel filters to them."""
        assert self.instance is not None
        tids = self._pid_tids(remember=False)
        if tids <= self._tids:
            return
        self._tids |= tids
        for event, text in self._filters().items():
            if event in self.instance.enabled:
                self.instance.write(f"events/{event}/filter", text or "0")

    def poll(self, timeout_ms: int, emit: Emit) -> int:
        if self.instance is None or self.instance.pipe_fd is None or self.builder is None:
            raise BackendError("backend is not open")
        self._follow()
        fds = [self.instance.pipe_fd]
        if self.events is not None:
            fds.append(self.events.fileno())
        if not self.stopping:
            with contextlib.suppress(InterruptedError):
                select.select(fds, [], [], timeout_ms / 1000)
        return self._handle(emit)[0]

    def drain(self, emit: Emit) -> int:
        """At shutdown: stop the buffer filling, then hand over what it holds."""
        if self.instance is None or self.instance.pipe_fd is None:
            return 0
        with contextlib.suppress(BackendError):
            self.instance.write("tracing_on", "0")
        self.stopping = False  # nothing new comes now: what is left is finite, take all of it
        total = 0
        while True:
            n, lines = self._handle(emit)
            total += n
            if lines == 0:
                return total

    def _handle(self, emit: Emit) -> tuple[int, int]:
        """(records handed over, lines read)."""
        assert self.instance is not None and self.builder is not None
        exits = self._take_exits()  # first: their sched_process_exit lines are in the pipe
        records: list[wire.Record] = []
        lines = 0
        while lines < LINES_PER_POLL and not (self.stopping and lines):
            data = self.instance.read()
            if not data:
                break
            data = self._partial + data
            text, sep, self._partial = data.rpartition(b"\n")
            if not sep:
                self._partial = data
                continue
            for raw in text.split(b"\n"):
                lines += 1
                p = parse_line(raw.decode("utf-8", "backslashreplace"))
                if p is not None:
                    records += self.builder.line(p)
        records = self.builder.confirm(self.builder.patch_tgids(records))
        read_all = lines < LINES_PER_POLL and not (self.stopping and lines)
        records += self._join_exits(exits, read_all, self.builder.proc_exit)
        records.sort(key=lambda r: r.ts_ns)  # stable: lines keep the kernel's order
        for rec in records:
            emit(rec)
        return len(records), lines

    def _kernel_lost(self) -> int:
        return self.instance.lost() if self.instance is not None else 0

    def cannot_see(self) -> list[str]:
        return CANNOT_SEE + (CANNOT_SEE_PIDS if self.config.pids else []) + self._missing

    def close(self) -> None:
        if self.instance is not None:
            self.instance.close()
            self.instance = None
        self._close_events()
