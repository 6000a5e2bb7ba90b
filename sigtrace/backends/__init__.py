"""Backends: each loads its probes and hands over the same wire records.

`select` resolves `auto` to the first backend whose probes pass and says why the ones
before it could not run.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from sigtrace import wire
from sigtrace.config import TraceConfig
from sigtrace.errors import (
    KernelFeatureError,
    LibraryError,
    PrivilegeError,
    SigtraceError,
    UsageError,
)

if TYPE_CHECKING:
    from sigtrace.containers.select import ContainerSelector

Emit = Callable[[wire.Record], None]


class Backend(ABC):
    name: str = ""

    def __init__(self, config: TraceConfig) -> None:
        self.config = config
        # The run's --container/--pod selections, resolved and polled by runner.py, which
        # sets this before open() (a backend that attaches to their processes reads it).
        self.selector: ContainerSelector | None = None
        # Gets each record's raw bytes before decoding, where the backend has them (--save-raw).
        self.raw_sink: Callable[[bytes], None] | None = None
        # Set when the run must end (SIGTERM): a backend stops handing over records promptly.
        self.stopping = False

    @classmethod
    @abstractmethod
    def probe(cls, config: TraceConfig) -> list[tuple[str, bool, str]]:
        """(what, ok, detail) for each requirement; all ok means it can run."""

    def require_probes(self) -> None:
        """Raise the first failed probe's error (its name decides the exit code)."""
        for what, ok, detail in self.probe(self.config):
            if not ok:
                raise error_for(what, detail)

    @abstractmethod
    def open(self) -> None:
        """Load and attach: tracing is live when this returns."""

    @abstractmethod
    def poll(self, timeout_ms: int, emit: Emit) -> int:
        """Hand over what arrived within timeout_ms; returns how many records."""

    @abstractmethod
    def lost_total(self) -> int:
        """Records the kernel could not hand over since open()."""

    @abstractmethod
    def close(self) -> None:
        """Detach everything; safe to call twice."""

    def drain(self, emit: Emit) -> int:
        """At the end: hand over what the kernel already holds, without waiting; returns how
        many records. A backend that holds nothing between polls (ptrace) has nothing."""
        return 0

    def cannot_see(self) -> list[str]:
        return []

    def wake_on(self, fd: int) -> bool:
        """Also return from poll() when fd becomes readable, and read it empty; then a poll
        may wait without a timeout (-1). False: this backend cannot, so it is always given
        one."""
        return False

    def add_cgroup_ids(self, ids: set[int]) -> None:
        """Widen the cgroup filter while tracing (a container started or restarted)."""
        raise NotImplementedError


# Imported when probed: `auto` on a kernel where core runs loads none of the others (~15 ms).
_CLASSES = {
    "core": ("sigtrace.backends.core", "CoreBackend"),
    "bcc": ("sigtrace.backends.bcc", "BccBackend"),  # imports bcc itself only in open()
    "tracefs": ("sigtrace.backends.tracefs", "TracefsBackend"),
    "ptrace": ("sigtrace.backends.ptrace", "PtraceBackend"),
}


def backend_class(name: str) -> type[Backend]:
    module, cls = _CLASSES[name]
    return cast(type[Backend], getattr(importlib.import_module(module), cls))


def registry() -> dict[str, type[Backend]]:
    return {name: backend_class(name) for name in _CLASSES}


AUTO_ORDER = ("core", "bcc", "tracefs", "ptrace")


def select(name: str, config: TraceConfig) -> tuple[type[Backend], str]:
    """The backend class to run and one line saying why."""
    if name != "auto":
        if name not in _CLASSES:
            raise UsageError(f"unknown backend {name!r} (have: {', '.join(_CLASSES)})")
        return backend_class(name), f"backend {name}: chosen with --backend"
    skipped: list[str] = []
    first_error: SigtraceError | None = None
    for cand in AUTO_ORDER:
        cls = backend_class(cand)
        failed = [(what, detail) for what, ok, detail in cls.probe(config) if not ok]
        if not failed:
            why = f"backend {cand}: all probes passed"
            if skipped:
                why += "; skipped " + "; ".join(skipped)
            return cls, why
        skipped.append(f"{cand} ({failed[0][0]}: {failed[0][1]})")
        if first_error is None:
            first_error = error_for(*failed[0])
    assert first_error is not None
    first_error.message = "no backend can run here: " + "; ".join(skipped)
    raise first_error


# A failed probe's name decides the exit code; its wording does not.
# The start record's `cannot_see` without --syscalls (the default).
NO_SYSCALLS = (
    "failed kill() calls (EPERM, ESRCH) and fan-out counts (no --syscalls; the call of each "
    "signal is read from its sender's registers on Linux 5.15+)"
)
NO_SYSCALLS_NO_REGS = (
    "kill-family syscalls (no --syscalls): no syscall names, fan-out counts or failed calls"
)

_PROBE_ERRORS: dict[str, type[SigtraceError]] = {
    "privileges": PrivilegeError,
    "libbpf": LibraryError,
    "bcc": LibraryError,
    "headers": LibraryError,  # a package to install (linux-headers-*), as BCC itself is
}


def error_for(what: str, detail: str) -> SigtraceError:
    return _PROBE_ERRORS.get(what, KernelFeatureError)(detail)
