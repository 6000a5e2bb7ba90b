"""The strace-style fallback: ptrace the processes asked for and every descendant.

No BPF and no tracefs: PTRACE_SEIZE each thread of `--pid` processes and of the PID 1 of
`--container`/`--pod` (and all they fork), report every signal-delivery-stop with its siginfo,
re-inject the signal, and take exits from waitpid(). A tracee is never left stopped by us:
group-stops get PTRACE_LISTEN, and close() (also after SIGTERM/SIGINT, or an error) interrupts
and detaches every tracee, re-injecting a signal it was stopped with. If sigtrace is killed
outright the kernel detaches them (PTRACE_O_EXITKILL is not set).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import time
from dataclasses import dataclass

from sigtrace import wire
from sigtrace.backends import Backend, Emit
from sigtrace.backends import ptrace_stops as pt
from sigtrace.backends.proctask import TaskFacts, exit_record, unknown_task
from sigtrace.backends.ptrace_records import delivery_records
from sigtrace.config import TraceConfig
from sigtrace.containers.cgroup_ids import CgroupIds
from sigtrace.containers.oom_count import OomCounters
from sigtrace.errors import BackendError, UsageError
from sigtrace.features import effective_caps
from sigtrace.procfs import Procfs

CAP_SYS_PTRACE = 19
STOPS_PER_POLL = 10000
DETACH_TIMEOUT_S = 2.0
CANNOT_SEE = [
    "SIGKILL is never seen as a stop: only the exit it causes; whether the OOM killer sent "
    "it is read from the memory cgroup's oom_kill counter (`oom` null when it can't be)",
    "ptrace changes what it observes: a traced task's signals (but SIGKILL) are never "
    "ignored when sent, so the kernel's decision (result, outcome) is rebuilt from /proc "
    "(listed in `derived`)",
    "one tracer per process: a process already under strace/gdb cannot be traced",
    "signals are seen when delivered, not when sent: no pending or merged signals, "
    "no sender outside the tracee's pid namespace, nor one that exited before delivery (it "
    "is looked up by si_pid in /proc), no system call (fan-out, failures), "
    "none taken with sigtimedwait/signalfd (tini, dumb-init: their stop tells no story)",
    "only the processes asked for and their descendants",
    "target_state.caught: no SIGKILL is seen; an exit's `caught` is /proc SigCgt read at the "
    "process's last signal stop (or attach, exec): a handler set after that is missed "
    "(listed in `derived`; null if never read)",
]


@dataclass
class Tracee:
    tid: int
    tgid: int | None


def _ptrace_error(exc: BaseException) -> int:
    return getattr(exc, "errno", None) or errno.EIO


class PtraceBackend(Backend):
    name = "ptrace"

    @classmethod
    def probe(cls, config: TraceConfig) -> list[tuple[str, bool, str]]:
        out = []
        path = os.path.join(config.proc_root, "sys/kernel/yama/ptrace_scope")
        try:
            with open(path) as f:
                scope = int(f.read().strip() or 0)
        except (OSError, ValueError):
            scope = None
        if scope is None:
            out.append(("ptrace_scope", True, "no Yama ptrace_scope"))
        else:
            ok = scope < 3
            detail = f"kernel.yama.ptrace_scope={scope}" + ("" if ok else ": ptrace is disabled")
            out.append(("ptrace_scope", ok, detail))
        has_cap = bool(effective_caps(config.proc_root) & (1 << CAP_SYS_PTRACE))
        out.append(
            ("privileges", has_cap, "CAP_SYS_PTRACE held" if has_cap else "missing CAP_SYS_PTRACE")
        )
        # It traces named processes only: `auto` must not pick it for a host-wide run.
        targets = bool(config.pids or config.containers or config.pods)
        out.append(
            ("targets", targets, "given" if targets else "needs --pid, --container or --pod")
        )
        return out

    def __init__(self, config: TraceConfig) -> None:
        super().__init__(config)
        self.procfs = Procfs(config.proc_root)
        self.cgroups = CgroupIds(sys_root=config.sys_root)
        self.facts = TaskFacts(self.procfs, self.cgroups)
        self.tracees: dict[int, Tracee] = {}
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._old_wakeup: int | None = None
        self._old_sigchld: object = None
        self._senders: dict[tuple[int, int], int | None] = {}
        self.oom = OomCounters(self.procfs, config.sys_root)
        self._open = False

    # --- attaching ------------------------------------------------------------------------

    def open(self) -> None:
        cfg = self.config
        if not (cfg.pids or cfg.containers or cfg.pods):
            raise UsageError(
                "the ptrace backend traces given processes only: add --pid, --container or --pod"
            )
        self.require_probes()
        for pid in cfg.pids:
            if not os.path.isdir(os.path.join(self.procfs.root, str(pid))):
                raise UsageError(f"--pid {pid}: no such process")
        self._open = True
        try:
            self._wakeup_on_sigchld()
            for pid in (*cfg.pids, *self._selected_pids()):
                self._attach_tree(pid, required=pid in cfg.pids)
        except BaseException:
            self.close()
            raise

    def _selected_pids(self) -> list[int]:
        """The PID 1 of each container the runner's selector matched."""
        if self.selector is None:
            return []
        return sorted({p for s in self.selector.selections for p in s.matched.values() if p > 0})

    def add_cgroup_ids(self, ids: set[int]) -> None:
        """A followed container appeared or restarted: trace its new PID 1's tree."""
        for pid in self._selected_pids():
            if pid not in self.tracees:
                self._attach_tree(pid, required=False)

    def _wakeup_on_sigchld(self) -> None:
        """A tracee's stop sends us SIGCHLD: turn it into a readable fd for poll()."""
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake_r, self._wake_w = r, w
        try:
            self._old_sigchld = signal.signal(signal.SIGCHLD, lambda *_: None)
            self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except ValueError:  # not the main thread: poll() falls back to short sleeps
            self._old_sigchld = None

    def _attach_tree(self, pid: int, required: bool) -> None:
        """Seize every thread of `pid` and of each descendant, until no new one shows up."""
        todo = [pid]
        while todo:
            proc = todo.pop()
            for _ in range(100):  # threads made while seizing: list again until stable
                new = [t for t in self.procfs.tids(proc) if t not in self.tracees]
                if not new:
                    break
                for tid in new:
                    self._seize(tid, proc, required and tid == pid)
            todo += self.procfs.children(proc)

    def _seize(self, tid: int, tgid: int, required: bool) -> None:
        try:
            pt.seize(tid)
        except Exception as exc:  # python-ptrace's PtraceError, with errno
            code = _ptrace_error(exc)
            if code == errno.ESRCH and not required:
                return  # exited meanwhile
            st = self.facts.status(tid)
            if code == errno.EPERM and st is not None and st.tracer_pid:
                if st.tracer_pid == os.getpid():
                    return  # ours already (a child auto-attached while we listed)
                raise BackendError(
                    f"pid {tid} is already traced by pid {st.tracer_pid} (one tracer per process)"
                ) from None
            raise BackendError(f"cannot trace pid {tid}: {os.strerror(code)}") from None
        self.tracees[tid] = Tracee(tid, tgid)
        self.facts.identity(tid, fresh=True)
        if tid == tgid:
            self.oom.track(tgid)

    # --- tracing --------------------------------------------------------------------------

    def poll(self, timeout_ms: int, emit: Emit) -> int:
        if not self._open:
            raise BackendError("backend is not open")
        n = self._reap(emit)
        if n or self.stopping:
            return n
        if self._wake_r is not None and self._old_sigchld is not None:
            with contextlib.suppress(InterruptedError):
                select.select([self._wake_r], [], [], timeout_ms / 1000)
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)
        else:
            time.sleep(min(timeout_ms, 5) / 1000)
        return self._reap(emit)

    def _reap(self, emit: Emit) -> int:
        records = 0
        for _ in range(STOPS_PER_POLL):
            try:
                tid, status = os.waitpid(-1, os.WNOHANG | pt.WALL)
            except ChildProcessError:
                break
            if tid == 0:
                break
            for rec in self._handle(tid, status):
                emit(rec)
                records += 1
        return records

    def _handle(self, tid: int, status: int) -> list[wire.Record]:
        stop = pt.decode_status(status)
        tracee = self.tracees.get(tid)
        if tracee is None:
            # An auto-attached child whose first stop came before its parent's event.
            tracee = self.tracees[tid] = Tracee(tid, None)
        try:
            if stop.kind == "exit":
                return self._exit(tracee, stop.sig)
            if stop.kind == "group_stop":
                pt.listen(tid)  # stays stopped until SIGCONT, as without us
            elif stop.kind == "event":
                self._event(tracee, stop.event)
                pt.cont(tid)
            elif stop.kind == "signal":
                records = self._delivery(tracee, stop.sig)
                pt.cont(tid, stop.sig)  # re-inject: the tracee gets it as if untraced
                return records
            elif stop.kind in ("event_stop", "other"):
                pt.cont(tid)
        except Exception as exc:
            if _ptrace_error(exc) != errno.ESRCH:  # ESRCH: killed meanwhile (SIGKILL)
                raise BackendError(f"ptrace of pid {tid} failed: {exc}") from None
        return []

    def _event(self, tracee: Tracee, event: int) -> None:
        if event in pt.NEW_CHILD_EVENTS:
            child = pt.event_msg(tracee.tid)
            if event == pt.PTRACE_EVENT_CLONE:
                st = self.facts.status(child)
                tgid = st.tgid if st is not None else None
            else:
                tgid = child
            self.tracees.setdefault(child, Tracee(child, tgid))
            if tgid == child:
                self.oom.track(child)
            self.facts.identity(child, fresh=True)
        elif event == pt.PTRACE_EVENT_EXEC:
            # A non-leader thread's exec takes over the leader's id; the others are gone.
            former = pt.event_msg(tracee.tid)
            if former != tracee.tid:
                self.tracees.pop(former, None)
                self.facts.forget(former)
            self.facts.identity(tracee.tid, fresh=True)

    def _delivery(self, tracee: Tracee, sig: int) -> list[wire.Record]:
        # Stopped: this is the state it dequeued in. Read at every stop, traced signal or not:
        # its handlers (SigCgt) as last read go into its exit record.
        status = self.facts.status(tracee.tid)
        if sig not in self.config.signals:
            return []
        ts = time.monotonic_ns()
        info = pt.siginfo(tracee.tid)
        ident = self.facts.identity(tracee.tid)
        if ident is None:
            target, depth = unknown_task(tracee.tgid, tracee.tid), 0
        else:
            target, depth = ident.task, ident.ns_depth
        return delivery_records(
            ts, info, target, status, lambda si_pid: self._sender(target, depth, si_pid)
        )

    def _sender(self, target: wire.Task, depth: int, si_pid: int) -> wire.Task | None:
        """The task whose own-namespace pid is si_pid, seen from the target's namespace.

        prepare_kill_siginfo() stores the sender's pid in the sender's own namespace: look
        for the one process that could have sent it (same namespace as the target, or any
        when the target is in the host's), remembered per (namespace, pid) while it lives.
        """
        key = (target.pidns_inum, si_pid)
        known = self._senders.get(key)
        if known is not None:
            task = self.facts.task(known)
            if task is not None and task.ns_pid == si_pid:
                return task
        candidates = []
        for pid in self.procfs.pids():
            st = self.procfs.status(pid)
            if st is None or st.ns_pid != si_pid:
                continue
            cand = self.facts.task(st.tgid)
            if cand is None:
                continue
            if cand.pidns_inum == target.pidns_inum or depth == 1:
                candidates.append(cand)
        if len(candidates) != 1:
            return None
        self._senders[key] = candidates[0].pid
        return candidates[0]

    def _exit(self, tracee: Tracee, status: int) -> list[wire.Record]:
        self.tracees.pop(tracee.tid, None)
        # Re-read while the zombie is ours: busybox names an applet (prctl) after the exec
        # event, so the comm read then can be stale ("exe"). Gone already: the cached one.
        ident = self.facts.identity(tracee.tid, fresh=True)
        # Its handlers as last read while it lived (a signal stop, attach or exec); a zombie's
        # SigCgt reads 0 and is not kept.
        caught = self.facts.caught(tracee.tid)
        self.facts.forget(tracee.tid)
        tgid = tracee.tgid if tracee.tgid is not None else (ident.task.pid if ident else None)
        if tgid != tracee.tid:
            return []  # a thread: the process ends with its leader, reported last by waitpid
        task = ident.task if ident is not None else unknown_task(tgid, tracee.tid)
        oom: bool | None = False
        if status & 0x7F == signal.SIGKILL and tgid is not None:
            # A SIGKILL is never seen here: the OOM killer's or the runtime's? Its cgroup says.
            oom = self.oom.killed(tgid)
        elif tgid is not None:
            self.oom.forget(tgid)
        return [exit_record(time.monotonic_ns(), 0, status, task, caught, oom)]

    def lost_total(self) -> int:
        return 0  # every stop is waited for: nothing can be lost, only delayed

    def cannot_see(self) -> list[str]:
        return list(CANNOT_SEE)

    # --- detaching ------------------------------------------------------------------------

    def close(self) -> None:
        if self.tracees:
            self._detach_all()
        self._open = False
        if self._old_sigchld is not None:
            with contextlib.suppress(ValueError):
                signal.set_wakeup_fd(self._old_wakeup if self._old_wakeup is not None else -1)
                signal.signal(signal.SIGCHLD, self._old_sigchld)  # type: ignore[arg-type]
            self._old_sigchld = None
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = None

    def _detach_all(self) -> None:
        """Interrupt every tracee, then detach each at its next stop, re-injecting the signal
        of a signal-delivery-stop, and leaving a group-stopped one stopped (as untraced)."""
        for tid in list(self.tracees):
            try:
                pt.interrupt(tid)
            except Exception:
                self.tracees.pop(tid, None)  # gone
        deadline = time.monotonic() + DETACH_TIMEOUT_S
        while self.tracees and time.monotonic() < deadline:
            try:
                tid, status = os.waitpid(-1, os.WNOHANG | pt.WALL)
            except ChildProcessError:
                break
            if tid == 0:
                time.sleep(0.001)
                continue
            stop = pt.decode_status(status)
            if stop.kind == "exit":
                self.tracees.pop(tid, None)
                continue
            if stop.kind == "event" and stop.event in pt.NEW_CHILD_EVENTS:
                with contextlib.suppress(Exception):
                    child = pt.event_msg(tid)
                    self.tracees.setdefault(child, Tracee(child, None))
            with contextlib.suppress(Exception):
                pt.detach(tid, stop.sig if stop.kind == "signal" else 0)
            self.tracees.pop(tid, None)
        for tid in list(self.tracees):  # never stopped for us in time: try anyway
            with contextlib.suppress(Exception):
                pt.detach(tid)
        self.tracees.clear()
