"""The backend for kernels with BPF but no BTF: bcc_program.c, compiled by BCC at start.

BCC (Debian's python3-bpfcc, not PyPI's unrelated `bcc`) compiles the program against the
installed kernel headers, which need not match the running kernel: so the program reads no
kernel struct, only tracepoint fields and helpers, and user space takes the rest from /proc
(bcc_records). Exit codes come from the process-events connector (procevents).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast

from sigtrace import features, ringbuf, signals, wire
from sigtrace.backends import Emit
from sigtrace.backends.assisted import ProcAssistedBackend
from sigtrace.backends.bcc_records import SIZE_DEFINES, BccTranslator
from sigtrace.backends.proctask import CAUGHT_FROM_PROC
from sigtrace.backends.tracefs_instance import format_fields, mount, probe_rows
from sigtrace.config import TraceConfig
from sigtrace.containers.cgroup_ids import detect_layout
from sigtrace.errors import BackendError, LibraryError
from sigtrace.ringbuf import MappedRing

DIST_PACKAGES = "/usr/lib/python3/dist-packages"
SYSTEM_PYTHON = "/usr/bin/python3"
KCONFIG = "include/linux/kconfig.h"
CANNOT_SEE = [
    "the target's tgid, uid, handler, blocked mask and tracer, and every process's namespace "
    "pid: read from /proc when the record is handled, not from the kernel when the signal "
    "was sent (listed in `derived`; null when the process was already gone)",
    "target_state.waiting (sigtimedwait), si_uid, and si_pid of sigqueue and kernel signals",
    "target_state.blocked of a caught signal whose handler was running when /proc was read "
    "(the kernel blocks a signal in its handler), unless its delivery came in the same batch: "
    "null",
    "which signal a group exit's SIGKILL report stands for: inferred from the signal that "
    "caused it and the target's /proc dispositions (`derived`: signal)",
    "--save-raw: BCC's records are not the CO-RE wire format; nothing is saved",
    CAUGHT_FROM_PROC,
]
CANNOT_SEE_CGROUPS = (
    "cgroups: only the sender's cgroup v2 id comes from the kernel (the target's needs its "
    "task_struct); --container/--pod match targets in user space, from /proc/<pid>/cgroup"
)
CANNOT_SEE_V1 = "; on this cgroup v1 host, senders too"
CANNOT_SEE_PIDS = "--pid: a thread started later joins the in-kernel filter within 0.5 s"


# --- finding BCC -----------------------------------------------------------------------------


def _distro_python() -> tuple[int, int] | None:
    """The major.minor of the Python that python3-bpfcc was installed for."""
    m = re.search(r"python(\d+)\.(\d+)$", os.path.realpath(SYSTEM_PYTHON))
    return (int(m.group(1)), int(m.group(2))) if m else None


def locate_bcc() -> tuple[bool, str]:
    """(found, where or why not), without importing it: a probe must stay cheap."""
    spec = importlib.util.find_spec("bcc")
    if spec is not None:
        for loc in spec.submodule_search_locations or ():
            if os.path.isfile(os.path.join(loc, "libbcc.py")):
                return True, loc
        return False, (
            f"the module named bcc at {spec.origin} is not BCC's (PyPI's bcc is unrelated): "
            "uninstall it and install python3-bpfcc"
        )
    if not os.path.isfile(os.path.join(DIST_PACKAGES, "bcc", "libbcc.py")):
        return False, "BCC's Python module not found: install python3-bpfcc"
    want, have = _distro_python(), sys.version_info[:2]
    if want != have:
        built = f"{want[0]}.{want[1]}" if want else "the system Python"
        return False, (
            f"python3-bpfcc is installed for Python {built}, this is {have[0]}.{have[1]}: "
            f"run sigtrace with {SYSTEM_PYTHON}"
        )
    return True, os.path.join(DIST_PACKAGES, "bcc")


def load_bcc() -> ModuleType:
    """The bcc module; from the distribution's directory when this Python (a venv without
    system site-packages, pyenv's) does not see it, added to sys.path for this import only."""
    found, where = locate_bcc()
    if not found:
        raise LibraryError(where)
    added = DIST_PACKAGES not in sys.path and where == os.path.join(DIST_PACKAGES, "bcc")
    if added:
        sys.path.append(DIST_PACKAGES)
    try:
        import bcc
    except (ImportError, OSError) as exc:  # OSError: libbcc.so missing (libbpfcc)
        raise LibraryError(f"cannot load BCC ({exc}): reinstall python3-bpfcc") from exc
    finally:
        if added:
            sys.path.remove(DIST_PACKAGES)
    if not hasattr(bcc, "BPF"):
        raise LibraryError(f"{bcc.__file__} is not BCC's module: install python3-bpfcc")
    return cast(ModuleType, bcc)  # no stubs: bcc is Any


# --- kernel headers --------------------------------------------------------------------------


@dataclass(frozen=True)
class Headers:
    """Where BCC compiles: `source` holds include/linux/kconfig.h, `build` the generated
    headers when they are kept apart. `override`: BCC's own lookup would miss this layout."""

    source: str
    build: str | None
    override: bool

    def env(self) -> dict[str, str]:
        return {"BCC_KERNEL_SOURCE": self.source} if self.override else {}

    def cflags(self) -> list[str]:
        if not self.override or self.build is None:
            return []
        arch = {"x86_64": "x86", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
        b = self.build
        return [
            f"-I{b}/arch/{arch}/include/generated/uapi",
            f"-I{b}/arch/{arch}/include/generated",
            f"-I{b}/include",
            f"-I{b}/include/generated/uapi",
        ]


def _has_kconfig(path: str) -> bool:
    return os.path.isfile(os.path.join(path, KCONFIG))


def _makefile_include(build: str) -> str | None:
    """Debian's per-flavour header directory: a Makefile that includes the common tree's."""
    try:
        with open(os.path.join(build, "Makefile")) as f:
            m = re.match(r"\s*include\s+(\S+)/Makefile\s*$", f.read())
    except OSError:
        return None
    return m.group(1) if m else None


def find_headers(release: str, sys_root: str = "/sys") -> tuple[Headers | None, str]:
    """The headers BCC will compile against (BCC's own lookup, then layouts it misses:
    a split Debian tree whose `source` link names the flavour directory)."""
    env = os.environ.get("BCC_KERNEL_SOURCE")
    if env:
        if _has_kconfig(env):
            return Headers(env, None, False), f"BCC_KERNEL_SOURCE={env}"
        return None, f"BCC_KERNEL_SOURCE={env} has no {KCONFIG}"
    kdir = f"/lib/modules/{release}"
    build, source = f"{kdir}/build", f"{kdir}/source"
    if os.path.isdir(build):
        if os.path.isdir(source) and _has_kconfig(source):
            return Headers(source, build, False), f"{source} and {build}"
        if _has_kconfig(build):
            split = os.path.isdir(source)  # BCC would look in source/, which lacks them
            return Headers(build, None, split), os.path.realpath(build)
        common = _makefile_include(build)
        if common and _has_kconfig(common):
            real = os.path.realpath(build)
            return Headers(common, real, True), f"{common} with {real}"
    kheaders = os.path.join(sys_root, "kernel/kheaders.tar.xz")
    if os.path.isfile(kheaders):
        return Headers(kheaders, None, False), f"{kheaders} (CONFIG_IKHEADERS)"
    return None, (
        f"no kernel headers at {build} (BCC compiles against them): install the headers "
        "package for this kernel, or one whose tracepoints match"
    )


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _captured_output() -> Iterator[Callable[[], str]]:
    """libbcc and clang write to fds 1 and 2 directly: keep their log out of the output
    stream and hand it back (the error, or --verbose, shows it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as log:
        saved = [os.dup(1), os.dup(2)]
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)

        def text() -> str:
            log.seek(0)
            return log.read().decode("utf-8", "replace")

        try:
            yield text
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


# --- the backend -----------------------------------------------------------------------------


class _BccRing:
    """BCC's own ring buffer consumer, where MappedRing is not safe (not x86-64)."""

    def __init__(self, bpf: Any, on_record: Callable[[bytes], None]) -> None:
        self.bpf = bpf
        self.n = 0
        self.budget = 1 << 62  # libbpf hands over everything there is

        def cb(_ctx: int, data: int, size: int) -> int:
            self.n += 1
            on_record(ctypes.string_at(data, size))
            return 0

        bpf["events"].open_ring_buffer(cb)

    def poll(self, timeout_ms: int) -> int:
        self.n = 0
        self.bpf.ring_buffer_poll(timeout_ms)
        return self.n

    def consume(self) -> int:
        self.n = 0
        self.bpf.ring_buffer_consume()
        return self.n

    def close(self) -> None:
        pass  # freed with the BPF object


class BccBackend(ProcAssistedBackend):
    name = "bcc"

    @classmethod
    def probe(cls, config: TraceConfig) -> list[tuple[str, bool, str]]:
        out = []
        d = features.bpf_syscall()
        out.append(("bpf", d.ok, d.detail))
        found, where = locate_bcc()
        out.append(("bcc", found, where))
        headers, detail = find_headers(features.kernel_release(), config.sys_root)
        out.append(("headers", headers is not None, detail))
        out += probe_rows(config.sys_root)
        p = features.bpf_privileges(config.proc_root)
        out.append(("privileges", p.ok, p.detail))
        net = features.proc_connector_privileges(config.proc_root)
        out.append(("privileges", net.ok, net.detail))
        return out

    def __init__(self, config: TraceConfig) -> None:
        super().__init__(config)
        self.bpf: Any = None
        self.ring: MappedRing | _BccRing | None = None
        self.builder: BccTranslator | None = None
        self.kernel_cgroups = False
        self._batch: list[wire.Record] = []
        self._held: list[wire.Record] = []
        self._raw: list[bytes] = []
        # Seconds: importing bcc, compiling + loading + attaching (the start's cost).
        self.timings: dict[str, float] = {}

    # --- open ---------------------------------------------------------------------------------

    def open(self) -> None:
        self.require_probes()
        cfg = self.config
        root = mount(cfg.sys_root)
        headers, _ = find_headers(features.kernel_release(), cfg.sys_root)
        assert headers is not None  # probed
        t0 = time.monotonic()
        bcc = load_bcc()
        t1 = time.monotonic()
        facts = self._open_facts(frozenset())
        self.filters.pids = self._pid_tids(remember=True)
        assert self.cgroups is not None
        # The current task's v2 cgroup id is all the kernel side can check, and only on a
        # cgroup v2 host does that say which container a process is in.
        self.kernel_cgroups = cfg.filters_cgroups and self.cgroups.layout.mode == "unified"
        self.builder = BccTranslator(facts, cfg.signals, self.filters, self._track)
        try:
            self._compile(bcc, headers, self._defines(root))
            self.timings = {"import": t1 - t0, "compile_load_attach": time.monotonic() - t1}
            if cfg.verbose:
                print(
                    f"sigtrace: bcc: import {self.timings['import']:.3f} s, compile + load + "
                    f"attach {self.timings['compile_load_attach']:.3f} s",
                    file=sys.stderr,
                )
            self._add_tids(self.filters.pids)
            self.add_cgroup_ids(self.filters.cgroup_ids)  # those given at start
            self._open_events()
            self.builder.exit_codes = self.events is not None
            events = self.bpf["events"]
            if ringbuf.supported():
                size = cfg.ringbuf_size
                stop = lambda: self.stopping  # noqa: E731
                self.ring = MappedRing(events.map_fd, size, self._on_record, should_stop=stop)
            else:
                self.ring = _BccRing(self.bpf, self._on_record)
        except BaseException:
            self.close()
            raise

    def _defines(self, root: str) -> dict[str, str]:
        """The program's settings, and which optional tracepoints and fields exist here."""
        cfg = self.config
        d = {
            "SIG_MASK": f"{signals.mask_of(cfg.signals):#x}ULL",
            "FILTER_PIDS": str(int(bool(cfg.pids))),
            "FILTER_CGROUPS": str(int(self.kernel_cgroups)),
            "RINGBUF_PAGES": str(cfg.ringbuf_size // 4096),
        }
        d.update({k: str(v) for k, v in SIZE_DEFINES.items()})
        for name in self._kill_calls(root):
            d[f"HAVE_SYS_{name.upper()}"] = "1"
        exit_fields = format_fields(root, "sched", "sched_process_exit") or set()
        if "group_dead" in exit_fields:
            d["EXIT_HAS_GROUP_DEAD"] = "1"
        else:
            self._missing.append(
                "sched_process_exit has no group_dead here: a process's exit is its main "
                "thread's (a main thread that ends first ends it early)"
            )
        oom = format_fields(root, "oom", "mark_victim")
        if oom is None:
            self._missing.append("OOM victims (no oom:mark_victim)")
        else:
            d["HAVE_OOM"] = "1"
            if "comm" in oom:
                d["OOM_HAS_COMM"] = "1"
            if "uid" in oom:
                d["OOM_HAS_UID"] = "1"
        return d

    def _compile(self, bcc: ModuleType, headers: Headers, defines: dict[str, str]) -> None:
        path = os.path.join(os.path.dirname(__file__), "bcc_program.c")
        try:
            with open(path) as f:
                text = f.read()
        except OSError as exc:
            raise BackendError(f"{path}: {exc.strerror}: reinstall sigtrace") from exc
        here = f"-I{os.path.dirname(path)}"  # sigtrace.h, the record kinds and shared flags
        cflags = [*headers.cflags(), here] + [f"-D{k}={v}" for k, v in defines.items()]
        failure: Exception | None = None
        with _environ(headers.env()), _captured_output() as log:
            try:
                self.bpf = bcc.BPF(text=text, cflags=cflags)
            except Exception as exc:  # BCC raises bare Exception for compile and load errors
                failure = exc
            output = log()
        if self.config.verbose and output:
            sys.stderr.write(output)
        if failure is not None:
            errors = [ln for ln in output.splitlines() if "error" in ln.lower()]
            first = errors[0].strip() if errors else str(failure)
            raise BackendError(
                f"BCC could not compile or load the program against {headers.source} "
                f"({first}; --verbose shows the log)"
            ) from failure

    def _add_tids(self, tids: Iterable[int]) -> None:
        try:
            for tid in tids:
                self._map_set("pid_filter", tid, 1)
        except Exception:  # BCC's "Could not update table": the map is full
            note = "--pid: too many threads for the in-kernel filter; some are not traced"
            if note not in self._missing:
                self._missing.append(note)

    def _map_set(self, name: str, key: int, value: int) -> None:
        table = self.bpf[name]
        table[table.Key(key)] = table.Leaf(value)

    def _track(self, tgid: int, bits: int) -> None:
        """Report this process's exit too: the kernel side tracked only a thread of it."""
        if self.bpf is None:
            return
        table = self.bpf["tracked"]
        old = table.get(table.Key(tgid))
        table[table.Key(tgid)] = table.Leaf((old.value if old is not None else 0) | bits)

    def add_cgroup_ids(self, ids: set[int]) -> None:
        if self.bpf is None:
            raise BackendError("backend is not open")
        super().add_cgroup_ids(ids)
        if self.kernel_cgroups:
            for cg in ids:
                self._map_set("cgroup_filter", cg, 1)

    # --- records ------------------------------------------------------------------------------

    def _on_record(self, data: bytes) -> None:
        self._raw.append(data)

    def _consume(self, timeout_ms: int | None = None) -> int:
        """The ring buffer's records into the batch (waiting up to timeout_ms for some)."""
        assert self.ring is not None and self.builder is not None
        n = self.ring.consume() if timeout_ms is None else self.ring.poll(timeout_ms)
        raw, self._raw = self._raw, []
        if raw:
            self._batch += self.builder.build(raw)
        return n

    def _follow_threads(self) -> None:
        new = self._pid_tids(remember=True) - self.filters.pids
        self._add_tids(new)
        self.filters.pids |= new

    def poll(self, timeout_ms: int, emit: Emit) -> int:
        if self.ring is None or self.builder is None:
            raise BackendError("backend is not open")
        self._follow()
        self._consume(0 if self.stopping else timeout_ms)
        self._read()
        return self._hand_over(emit)

    def _read(self) -> int:
        """Exit codes from the connector, matched with the kernel side's exit records;
        returns how many records the ring buffer had meanwhile."""
        assert self.ring is not None and self.builder is not None
        exits = self._take_exits()
        n = self._consume()
        read_all = n < self.ring.budget and not (self.stopping and n)
        self._batch += self._join_exits(exits, read_all, self.builder.proc_exit)
        if read_all:
            self.builder.expire(time.monotonic_ns())
        return n

    def _hand_over(self, emit: Emit, everything: bool = False) -> int:
        """The batch in time order, holding back what is newer than an exit still waiting for
        its code (the connector sends it a moment after), so that an init's exit comes before
        its namespace teardown, as the kernel ordered them."""
        assert self.builder is not None
        batch = self._held + self._batch
        self._batch = []
        batch.sort(key=lambda r: r.ts_ns)  # stable: the ring buffer's order otherwise
        mark = None if everything else self.builder.oldest_pending_exit()
        cut = len(batch)
        if mark is not None:
            cut = next((i for i, r in enumerate(batch) if r.ts_ns >= mark), cut)
        self._held = batch[cut:]
        for rec in batch[:cut]:
            emit(rec)
        return cut

    def drain(self, emit: Emit) -> int:
        """At shutdown: stop the kernel side emitting (detaching takes ~40 ms per
        tracepoint), then hand over what the buffer holds."""
        if self.ring is None or self.bpf is None:
            return 0
        self._map_set("state", 1, 1)
        self.stopping = False  # nothing new comes now: what is left is finite, take all of it
        total = 0
        while self._read():
            total += self._hand_over(emit)
        return total + self._hand_over(emit, everything=True)

    def _kernel_lost(self) -> int:
        if self.bpf is None:
            return 0
        table = self.bpf["lost"]
        return sum(table.getvalue(table.Key(0)))

    def cannot_see(self) -> list[str]:
        out = list(CANNOT_SEE)
        cgroups = CANNOT_SEE_CGROUPS
        layout = self.cgroups.layout if self.cgroups else detect_layout(self.config.sys_root)
        if layout.mode != "unified":
            cgroups += CANNOT_SEE_V1
        out.append(cgroups)
        if self.config.pids:
            out.append(CANNOT_SEE_PIDS)
        return out + self._missing

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        if self.bpf is not None:
            _detach_all(self.bpf)
            self.bpf.cleanup()
            self.bpf = None
        self._close_events()


def _detach_all(bpf: Any) -> None:
    """Each tracepoint's detach waits for RCU grace periods: do them side by side (about half
    the time of BCC's one-by-one cleanup)."""

    def detach(tp: bytes) -> None:
        with contextlib.suppress(Exception):
            bpf.detach_tracepoint(tp)

    threads = [threading.Thread(target=detach, args=(tp,)) for tp in list(bpf.tracepoint_fds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
