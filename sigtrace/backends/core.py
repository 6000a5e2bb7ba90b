"""The default backend: the compiled CO-RE object loaded through the system libbpf.

No compiler and no kernel headers at run time: libbpf relocates the object against the
running kernel's BTF. Optional hooks (syscall tracepoints, oom:mark_victim) are switched
off when the kernel lacks them, and listed in the start record as what this run can't see.
"""

from __future__ import annotations

import os
import struct

from sigtrace import features, ringbuf, signals, syscalls, wire
from sigtrace.backends import NO_SYSCALLS, NO_SYSCALLS_NO_REGS, Backend, Emit
from sigtrace.config import TraceConfig
from sigtrace.errors import BackendError
from sigtrace.libbpf import BpfObject, Libbpf, RingBuffer, find_library
from sigtrace.ringbuf import MappedRing


def object_path() -> str:
    # Plain os.path: importlib.resources costs ~6 ms of the 0.1 s start budget.
    return os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "sigtrace.bpf.o")


class CoreBackend(Backend):
    name = "core"

    @classmethod
    def probe(cls, config: TraceConfig) -> list[tuple[str, bool, str]]:
        out = []
        d = features.bpf_syscall()
        out.append(("bpf", d.ok, d.detail))
        b = features.btf(config.sys_root)
        out.append(("btf", b.ok, b.detail))
        lib = find_library()
        out.append(("libbpf", lib is not None, lib or "libbpf 1.x not found (install libbpf1)"))
        p = features.bpf_privileges(config.proc_root)
        out.append(("privileges", p.ok, p.detail))
        path = object_path()
        ok = os.path.isfile(path)
        out.append(("object", ok, path if ok else f"{path} missing: reinstall sigtrace"))
        return out

    def __init__(self, config: TraceConfig) -> None:
        super().__init__(config)
        self.obj: BpfObject | None = None
        self.rb: MappedRing | RingBuffer | None = None
        self._missing: list[str] = []
        self._emit: Emit | None = None
        self._count = 0

    def open(self) -> None:
        self.require_probes()
        lib = Libbpf(verbose=self.config.verbose)
        obj = BpfObject(lib, object_path())
        self.obj = obj
        try:
            self._configure(lib, obj)
            obj.load()
            self._fill_filters(obj)
            obj.attach_all()
            fd, stop = obj.map_fd("events"), lambda: self.stopping
            if ringbuf.supported():
                size = self.config.ringbuf_size
                self.rb = MappedRing(
                    fd, size, self._on_record, should_stop=stop, on_batch=self._on_batch
                )
            else:
                self.rb = RingBuffer(lib, fd, self._on_record, should_stop=stop)
        except BaseException:
            self.close()
            raise

    def _configure(self, lib: Libbpf, obj: BpfObject) -> None:
        cfg = self.config
        numbers = syscalls.table()
        hooks = cfg.syscalls
        settings = {
            "sig_mask": signals.mask_of(cfg.signals),
            "filter_pids": int(bool(cfg.pids)),
            "filter_cgroups": int(cfg.filters_cgroups),
            "raw_syscalls": int(hooks and numbers is not None),
            "regs_syscalls": int(not hooks and numbers is not None),
            # No sys_enter hook where the sender's registers can be read at send time.
            "lazy_calls": int(hooks and numbers is not None and _has_task_pt_regs()),
        }
        for name, nr in (numbers or {}).items():
            settings[f"nr_{name}"] = nr
        obj.set_rodata(settings)
        obj.set_max_entries("events", cfg.ringbuf_size)
        # tracefs, not the kernel's BTF: parsing that again costs ~7 ms at every start.
        has_oom = features.tracepoint("oom", "mark_victim", cfg.sys_root).ok
        classic_ok = (
            hooks
            and numbers is None
            and features.tracepoint("syscalls", "sys_enter_kill", cfg.sys_root, mount=True).ok
        )
        for name, prog in obj.programs():
            if name.startswith("raw_sys_"):
                if not settings["raw_syscalls"] or (
                    name == "raw_sys_enter" and settings["lazy_calls"]
                ):
                    obj.disable(prog)
            elif name.startswith(("enter_", "exit_")):
                if not classic_ok:
                    obj.disable(prog)
            elif name == "handle_oom" and not has_oom:
                obj.disable(prog)
                self._missing.append("OOM victims (no oom:mark_victim)")
        if not hooks:
            self._missing.append(NO_SYSCALLS if numbers is not None else NO_SYSCALLS_NO_REGS)
        elif numbers is None and not classic_ok:
            self._missing.append(
                "kill-family syscalls (no syscall tracepoints): no fan-out counts, "
                "no EPERM/ESRCH failures"
            )

    def _fill_filters(self, obj: BpfObject) -> None:
        one = b"\x01"
        for pid in self.config.pids:
            obj.update("pid_filter", struct.pack("=I", pid), one)
        for cg in self.config.cgroup_ids:
            obj.update("cgroup_filter", struct.pack("=Q", cg), one)

    def add_cgroup_ids(self, ids: set[int]) -> None:
        if self.obj is None:
            raise BackendError("backend is not open")
        for cg in ids:
            self.obj.update("cgroup_filter", struct.pack("=Q", cg), b"\x01")

    def _on_record(self, data: bytes) -> None:
        self._count += 1
        if self.raw_sink is not None:
            self.raw_sink(data)
        assert self._emit is not None
        self._emit(wire.decode(data))

    def _on_batch(self, batch: list[bytes]) -> None:
        """_on_record for each, with the lookups done once per batch."""
        self._count += len(batch)
        emit, decode, raw = self._emit, wire.decode, self.raw_sink
        assert emit is not None
        if raw is None:
            for data in batch:
                emit(decode(data))
        else:
            for data in batch:
                raw(data)
                emit(decode(data))

    def wake_on(self, fd: int) -> bool:
        if not isinstance(self.rb, MappedRing):
            return False
        self.rb.wake_on(fd)
        return True

    def poll(self, timeout_ms: int, emit: Emit) -> int:
        if self.rb is None:
            raise BackendError("backend is not open")
        self._emit = emit
        return self.rb.poll(timeout_ms)

    def drain(self, emit: Emit) -> int:
        """At shutdown: detach first, so that a signal flood cannot keep the buffer full,
        then hand over what is already in it."""
        if self.rb is None or self.obj is None:
            return 0
        self.obj.detach()
        self._emit = emit
        self.stopping = False  # detached: what is left is finite, hand all of it over
        total = 0
        # Nothing new can arrive now: a few budget-sized rounds empty the buffer.
        while (n := self.rb.consume()) > 0:
            total += n
        return total

    def lost_total(self) -> int:
        return self.obj.percpu_u64_sum("lost") if self.obj else 0

    def cannot_see(self) -> list[str]:
        return list(self._missing)

    def close(self) -> None:
        if self.rb is not None:
            self.rb.close()
            self.rb = None
        if self.obj is not None:
            self.obj.close()
            self.obj = None


def _has_task_pt_regs() -> bool:
    """bpf_task_pt_regs() (Linux 5.15): the program's own CO-RE check decides whether it is
    used; this decides whether the sys_enter hook can be left out."""
    version = features.kernel_version()
    return version is not None and version >= (5, 15)
