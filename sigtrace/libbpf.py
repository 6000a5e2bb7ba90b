"""A small ctypes binding to the system libbpf (1.x API): open, configure, load, attach,
maps, ring buffer. Only what sigtrace uses.

Each failure becomes one of the project's exceptions with a one-line message; libbpf's
own log is collected and shown only when asked for (verbose), as libbpf-bootstrap does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Callable, Iterator
from typing import TypeVar, cast

from sigtrace.errors import BackendError, KernelFeatureError, LibraryError, PrivilegeError

_c_void_p = ctypes.c_void_p
_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, _c_void_p, _c_void_p, ctypes.c_size_t)
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, _c_void_p)

BTF_KIND_STRUCT = 4
BTF_KIND_DATASEC = 15
LIBBPF_NAMES = ("libbpf.so.1", "libbpf.so")


class _BtfType(ctypes.Structure):
    _fields_ = (
        ("name_off", ctypes.c_uint32),
        ("info", ctypes.c_uint32),
        ("size_or_type", ctypes.c_uint32),
    )


class _VarSecinfo(ctypes.Structure):
    _fields_ = (("type", ctypes.c_uint32), ("offset", ctypes.c_uint32), ("size", ctypes.c_uint32))


class _BtfMember(ctypes.Structure):
    _fields_ = (
        ("name_off", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("offset", ctypes.c_uint32),
    )


_Rec = TypeVar("_Rec", _VarSecinfo, _BtfMember)


def _records(t: _BtfType, cls: type[_Rec]) -> ctypes._Pointer[_Rec]:
    """The vlen records (a datasec's variables, a struct's members) that follow a btf_type."""
    return ctypes.cast(ctypes.addressof(t) + ctypes.sizeof(_BtfType), ctypes.POINTER(cls))


def _sig(lib: ctypes.CDLL, name: str, restype: type | None, *argtypes: type) -> None:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


def find_library() -> str | None:
    # SIGTRACE_LIBBPF names the library to use (a path or soname), or hides it in tests.
    override = os.environ.get("SIGTRACE_LIBBPF")
    for name in (override,) if override else LIBBPF_NAMES:
        try:
            ctypes.CDLL(name)
            return name
        except OSError:
            continue
    return None if override else ctypes.util.find_library("bpf")


class Libbpf:
    """The loaded shared library with typed signatures, and its collected log."""

    def __init__(self, verbose: bool = False) -> None:
        name = find_library()
        if name is None:
            raise LibraryError("libbpf 1.x not found (install libbpf1)")
        lib = ctypes.CDLL(name, use_errno=True)
        self.lib = lib
        self.log: list[str] = []
        self.verbose = verbose
        v = _c_void_p
        _sig(lib, "libbpf_major_version", ctypes.c_uint32)
        if lib.libbpf_major_version() < 1:
            raise LibraryError(f"{name} is older than libbpf 1.0")
        _sig(lib, "libbpf_set_print", v, _PRINT_FN)
        _sig(lib, "bpf_object__open_file", v, ctypes.c_char_p, v)
        _sig(lib, "bpf_object__load", ctypes.c_int, v)
        _sig(lib, "bpf_object__close", None, v)
        _sig(lib, "bpf_object__btf", v, v)
        _sig(lib, "bpf_object__find_map_by_name", v, v, ctypes.c_char_p)
        _sig(lib, "bpf_object__next_program", v, v, v)
        _sig(lib, "bpf_program__name", ctypes.c_char_p, v)
        _sig(lib, "bpf_program__set_autoload", ctypes.c_int, v, ctypes.c_bool)
        _sig(lib, "bpf_program__autoload", ctypes.c_bool, v)
        _sig(lib, "bpf_program__attach", v, v)
        _sig(lib, "bpf_link__destroy", ctypes.c_int, v)
        _sig(lib, "bpf_map__fd", ctypes.c_int, v)
        _sig(lib, "bpf_map__initial_value", v, v, ctypes.POINTER(ctypes.c_size_t))
        _sig(lib, "bpf_map__set_max_entries", ctypes.c_int, v, ctypes.c_uint32)
        _sig(lib, "bpf_map_update_elem", ctypes.c_int, ctypes.c_int, v, v, ctypes.c_uint64)
        _sig(lib, "bpf_map_lookup_elem", ctypes.c_int, ctypes.c_int, v, v)
        _sig(lib, "btf__find_by_name_kind", ctypes.c_int32, v, ctypes.c_char_p, ctypes.c_uint32)
        _sig(lib, "btf__type_by_id", ctypes.POINTER(_BtfType), v, ctypes.c_uint32)
        _sig(lib, "btf__name_by_offset", ctypes.c_char_p, v, ctypes.c_uint32)
        _sig(lib, "btf__parse", v, ctypes.c_char_p, v)
        _sig(lib, "btf__resolve_size", ctypes.c_long, v, ctypes.c_uint32)
        _sig(lib, "btf__free", None, v)
        _sig(lib, "libbpf_num_possible_cpus", ctypes.c_int)
        _sig(lib, "ring_buffer__new", v, ctypes.c_int, _SAMPLE_FN, v, v)
        _sig(lib, "ring_buffer__poll", ctypes.c_int, v, ctypes.c_int)
        _sig(lib, "ring_buffer__consume", ctypes.c_int, v)
        _sig(lib, "ring_buffer__free", None, v)
        _sig(lib, "ring_buffer__epoll_fd", ctypes.c_int, v)
        libc = ctypes.CDLL(None, use_errno=True)
        self._vsnprintf = libc.vsnprintf
        self._vsnprintf.restype = ctypes.c_int
        self._vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, v]
        # One buffer for every line: a verifier log comes as one (long) line.
        self._line = ctypes.create_string_buffer(1 << 16)
        # Kept as an attribute: libbpf holds the pointer for the life of the process.
        self._print_cb = _PRINT_FN(self._on_print)
        lib.libbpf_set_print(self._print_cb)

    def _on_print(self, level: int, fmt: bytes, args: int) -> int:
        buf = self._line
        self._vsnprintf(buf, len(buf), fmt, args)
        line = buf.value.decode("utf-8", "replace").rstrip("\n")
        self.log.append(line)
        del self.log[:-200]  # the tail is what explains a failure
        if self.verbose:
            os.write(2, (line + "\n").encode())
        return 0

    def struct_layout(self, path: str, name: str) -> tuple[int, list[tuple[str, int, int]]] | None:
        """(size, [(member, byte offset, byte size)]) of a struct in an ELF file's BTF; None
        when the file's BTF has no such struct."""
        btf = self.lib.btf__parse(path.encode(), None)
        if not btf:
            raise BackendError(f"cannot read the BTF of {path}")
        try:
            tid = self.lib.btf__find_by_name_kind(btf, name.encode(), BTF_KIND_STRUCT)
            if tid <= 0:
                return None
            t = self.lib.btf__type_by_id(btf, tid).contents
            members = _records(t, _BtfMember)
            out = []
            for i in range(t.info & 0xFFFF):
                m = members[i]
                member = self.lib.btf__name_by_offset(btf, m.name_off).decode()
                out.append((member, m.offset // 8, self.lib.btf__resolve_size(btf, m.type)))
            return t.size_or_type, out
        finally:
            self.lib.btf__free(btf)


def _errno_error(what: str, err: int, log: list[str]) -> Exception:
    detail = os.strerror(err) if err else "unknown error"
    hint = next(
        (ln for ln in reversed(log) if "invalid" in ln.lower() or "failed" in ln.lower()), ""
    )
    msg = f"{what}: {detail}" + (f" ({hint.strip()})" if hint else "")
    if err in (errno.EPERM, errno.EACCES):
        return PrivilegeError(f"{what}: {detail}: run as root (CAP_BPF and CAP_PERFMON)")
    if err in (errno.ENOENT, errno.ESRCH, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
        return KernelFeatureError(msg)
    return BackendError(msg)


class BpfObject:
    """One opened BPF object: set rodata, size maps, load, attach, close."""

    def __init__(self, libbpf: Libbpf, path: str) -> None:
        self.bpf = libbpf
        self.lib = libbpf.lib
        ctypes.set_errno(0)
        self.obj = self.lib.bpf_object__open_file(path.encode(), None)
        if not self.obj:
            raise _errno_error(f"opening {path}", ctypes.get_errno(), libbpf.log)
        self.links: list[int] = []
        self.attached: list[str] = []

    def programs(self) -> Iterator[tuple[str, int]]:
        prog = self.lib.bpf_object__next_program(self.obj, None)
        while prog:
            yield self.lib.bpf_program__name(prog).decode(), prog
            prog = self.lib.bpf_object__next_program(self.obj, prog)

    def disable(self, prog: int) -> None:
        self.lib.bpf_program__set_autoload(prog, False)

    def map(self, name: str) -> int:
        m = self.lib.bpf_object__find_map_by_name(self.obj, name.encode())
        if not m:
            raise BackendError(f"BPF object has no map {name!r}")
        return cast(int, m)

    def set_max_entries(self, name: str, n: int) -> None:
        if self.lib.bpf_map__set_max_entries(self.map(name), n) != 0:
            raise BackendError(f"cannot size map {name!r} to {n}")

    def set_rodata(self, values: dict[str, int]) -> None:
        """Write `const volatile` settings before load, by variable name from the BTF."""
        btf = self.lib.bpf_object__btf(self.obj)
        sec_id = self.lib.btf__find_by_name_kind(btf, b".rodata", BTF_KIND_DATASEC)
        if sec_id <= 0:
            raise BackendError("BPF object has no .rodata section")
        sec = self.lib.btf__type_by_id(btf, sec_id).contents
        vlen = sec.info & 0xFFFF
        infos = _records(sec, _VarSecinfo)
        size = ctypes.c_size_t()
        base = self.lib.bpf_map__initial_value(self.map(".rodata"), ctypes.byref(size))
        todo = dict(values)
        for i in range(vlen):
            vi = infos[i]
            var = self.lib.btf__type_by_id(btf, vi.type).contents
            name = self.lib.btf__name_by_offset(btf, var.name_off).decode()
            if name in todo:
                value = todo.pop(name)
                ctypes.memmove(base + vi.offset, value.to_bytes(vi.size, "little"), vi.size)
        if todo:
            raise BackendError(f"BPF object lacks settings: {', '.join(sorted(todo))}")

    def load(self) -> None:
        ctypes.set_errno(0)
        rc = self.lib.bpf_object__load(self.obj)
        if rc != 0:
            raise _errno_error("loading BPF programs", -rc, self.bpf.log)

    def attach_all(self) -> None:
        for name, prog in self.programs():
            if not self.lib.bpf_program__autoload(prog):
                continue
            ctypes.set_errno(0)
            link = self.lib.bpf_program__attach(prog)
            if not link:
                raise _errno_error(f"attaching {name}", ctypes.get_errno(), self.bpf.log)
            self.links.append(link)
            self.attached.append(name)

    def map_fd(self, name: str) -> int:
        return cast(int, self.lib.bpf_map__fd(self.map(name)))

    def update(self, name: str, key: bytes, value: bytes) -> None:
        kb = ctypes.create_string_buffer(key, len(key))
        vb = ctypes.create_string_buffer(value, len(value))
        if self.lib.bpf_map_update_elem(self.map_fd(name), kb, vb, 0) != 0:
            raise BackendError(f"cannot update map {name!r}: {os.strerror(ctypes.get_errno())}")

    def percpu_u64_sum(self, name: str, key: int = 0) -> int:
        ncpu = self.lib.libbpf_num_possible_cpus()
        vals = (ctypes.c_uint64 * ncpu)()
        k = ctypes.c_uint32(key)
        if self.lib.bpf_map_lookup_elem(self.map_fd(name), ctypes.byref(k), vals) != 0:
            return 0
        return sum(vals)

    def detach(self) -> None:
        for link in self.links:
            self.lib.bpf_link__destroy(link)
        self.links.clear()

    def close(self) -> None:
        self.detach()
        if self.obj:
            self.lib.bpf_object__close(self.obj)
            self.obj = None


class RingBuffer:
    """libbpf's ring_buffer over one map; `on_record(bytes)` runs for each record.

    The ctypes callback object is held by this instance for the buffer's whole life:
    freeing it while libbpf still points at it would crash the process. libbpf consumes for
    as long as the kernel produces, so under a flood one poll would never return: after
    `budget` records, or once `should_stop()` says so, the callback returns -1, which makes
    libbpf store the consumer position and return (the record in hand is already handled).
    """

    def __init__(
        self,
        libbpf: Libbpf,
        map_fd: int,
        on_record: Callable[[bytes], None],
        should_stop: Callable[[], bool] = lambda: False,
        budget: int = 8192,
    ) -> None:
        self.lib = libbpf.lib
        self._error: BaseException | None = None
        self._taken = 0
        self._yielded = False
        self.budget = budget

        def sample(_ctx: int, data: int, size: int) -> int:
            try:
                on_record(ctypes.string_at(data, size))
            except BaseException as exc:  # stop polling and re-raise outside C
                self._error = exc
                return -1
            self._taken += 1
            if self._taken >= self.budget or should_stop():
                self._yielded = True
                return -1
            return 0

        self._cb = _SAMPLE_FN(sample)
        ctypes.set_errno(0)
        self.rb = self.lib.ring_buffer__new(map_fd, self._cb, None, None)
        if not self.rb:
            raise _errno_error("creating the ring buffer", ctypes.get_errno(), libbpf.log)

    def fileno(self) -> int:
        return cast(int, self.lib.ring_buffer__epoll_fd(self.rb))

    def _run(self, fn: Callable[[], int]) -> int:
        self._taken = 0
        self._yielded = False
        n = fn()
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        if self._yielded:
            return self._taken
        if n < 0 and n != -errno.EINTR:
            raise BackendError(f"reading the ring buffer: {os.strerror(-n)}")
        return self._taken

    def poll(self, timeout_ms: int) -> int:
        """Records handed over within timeout_ms (at most `budget`)."""
        return self._run(lambda: self.lib.ring_buffer__poll(self.rb, timeout_ms))

    def consume(self) -> int:
        """Records already in the buffer, without waiting (at most `budget` per call)."""
        return self._run(lambda: self.lib.ring_buffer__consume(self.rb))

    def close(self) -> None:
        if self.rb:
            self.lib.ring_buffer__free(self.rb)
            self.rb = None
