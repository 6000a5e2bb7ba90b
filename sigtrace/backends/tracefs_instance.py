"""A private ftrace instance: `<tracefs>/instances/sigtrace-<pid>`.

The host's own tracing (the top-level buffer, other instances, other tools) is untouched:
every setting, filter and event lives in our instance, which is removed on close. A previous
run killed with SIGKILL leaves its instance behind; `remove_stale` removes the ones whose pid
is dead. Filter expressions are built by pure functions (tested without tracefs).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterable

from sigtrace import features
from sigtrace.errors import BackendError, KernelFeatureError

PREFIX = "sigtrace-"
_STALE = re.compile(rf"^{PREFIX}(\d+)$")
# The kernel caps a filter string at a page; stay well below, else filter in user space.
FILTER_MAX = 3000


def probe_rows(sys_root: str) -> list[tuple[str, bool, str]]:
    """The signal tracepoints, where tracefs is mounted; else whether open() can mount it."""
    where = f"{sys_root}/kernel/tracing"
    if features.tracefs_root(sys_root) is None:
        ok = os.path.isdir(where)
        return [("tracefs", ok, f"{where}: mountable" if ok else f"no tracefs under {where}")]
    sig = features.tracepoint("signal", "signal_generate", sys_root)
    return [("tracepoints", sig.ok, "signal events present" if sig.ok else sig.detail)]


def mount(sys_root: str) -> str:
    """tracefs's path, mounted now if it was not (probe_rows said it can be)."""
    root = features.tracefs_root(sys_root, mount=True)
    if root is None:
        raise KernelFeatureError(f"cannot mount tracefs at {sys_root}/kernel/tracing")
    return root


def remove_stale(tracefs: str, proc_root: str = "/proc") -> list[str]:
    """Remove `sigtrace-<pid>` instances whose pid is not running; returns their names."""
    removed: list[str] = []
    try:
        names = os.listdir(os.path.join(tracefs, "instances"))
    except OSError:
        return removed
    for name in names:
        m = _STALE.match(name)
        if m is None or os.path.exists(os.path.join(proc_root, m[1])):
            continue
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(tracefs, "instances", name))
            removed.append(name)
    return removed


def or_filter(field: str, values: Iterable[int]) -> str:
    """`sig == 15 || sig == 9` (pure)."""
    return " || ".join(f"{field} == {v}" for v in sorted(set(values)))


def and_filters(*parts: str) -> str:
    """Each non-empty part in parentheses, joined by && (pure)."""
    kept = [p for p in parts if p]
    if len(kept) == 1:
        return kept[0]
    return " && ".join(f"({p})" for p in kept)


def pid_filter(fields: Iterable[str], tids: Iterable[int]) -> str:
    """`common_pid == 5 || pid == 5 || ...` for every field and tid (pure); "" when too long."""
    tids = sorted(set(tids))
    text = " || ".join(f"{f} == {t}" for t in tids for f in fields)
    return text if len(text) <= FILTER_MAX else ""


class Instance:
    """Create with `create()`; `close()` disables everything and removes the directory."""

    def __init__(self, tracefs: str, name: str | None = None) -> None:
        self.tracefs = tracefs
        self.name = name or f"{PREFIX}{os.getpid()}"
        self.path = os.path.join(tracefs, "instances", self.name)
        self.pipe_fd: int | None = None
        self.enabled: list[str] = []

    def create(self) -> None:
        try:
            os.mkdir(self.path)
        except FileExistsError:
            # Ours from an earlier open() in this process: start from a clean one.
            self._remove()
            os.mkdir(self.path)
        except OSError as exc:
            raise BackendError(f"cannot create {self.path}: {exc.strerror}") from None

    def write(self, rel: str, value: str) -> None:
        try:
            with open(os.path.join(self.path, rel), "w") as f:
                f.write(value)
        except OSError as exc:
            if exc.errno == errno.EINVAL and rel.endswith("/filter"):
                raise BackendError(f"tracefs rejected filter {value!r} for {rel}") from exc
            raise BackendError(f"cannot write {rel} of {self.path}: {exc.strerror}") from exc

    def has_event(self, event: str) -> bool:
        return os.path.isdir(os.path.join(self.path, "events", event))

    def enable(self, event: str, filter_text: str = "") -> None:
        """Enable `category/name` with an in-kernel filter."""
        if not self.has_event(event):
            raise KernelFeatureError(f"no tracepoint {event.replace('/', ':')}")
        if filter_text:
            self.write(f"events/{event}/filter", filter_text)
        self.write(f"events/{event}/enable", "1")
        self.enabled.append(event)

    def open_pipe(self) -> int:
        try:
            self.pipe_fd = os.open(
                os.path.join(self.path, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
            )
        except OSError as exc:
            raise BackendError(f"cannot open {self.path}/trace_pipe: {exc.strerror}") from exc
        return self.pipe_fd

    def read(self, size: int = 1 << 16) -> bytes:
        """What the pipe holds now (b"" when empty): it never blocks."""
        assert self.pipe_fd is not None
        try:
            return os.read(self.pipe_fd, size)
        except (BlockingIOError, InterruptedError):
            return b""

    def lost(self) -> int:
        """Events the buffers could not keep: overwritten (overrun) or refused (dropped)."""
        total = 0
        per_cpu = os.path.join(self.path, "per_cpu")
        try:
            cpus = os.listdir(per_cpu)
        except OSError:
            return 0
        for cpu in cpus:
            try:
                with open(os.path.join(per_cpu, cpu, "stats")) as f:
                    for line in f:
                        key, _, value = line.partition(":")
                        if key in ("overrun", "dropped events"):
                            total += int(value.strip() or 0)
            except (OSError, ValueError):
                continue
        return total

    def close(self) -> None:
        if self.pipe_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.pipe_fd)
            self.pipe_fd = None
        if os.path.isdir(self.path):
            self._remove()

    def _remove(self) -> None:
        # Stop first, so nothing is recorded while tearing down; rmdir (which also disables
        # the events) refuses with EBUSY while the pipe is open.
        for rel in ("tracing_on", "events/enable"):
            with contextlib.suppress(OSError), open(os.path.join(self.path, rel), "w") as f:
                f.write("0")
        self.enabled = []
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise BackendError(f"cannot remove {self.path}: {exc.strerror}") from None


def format_fields(root: str, category: str, name: str) -> set[str] | None:
    """The field names of a tracepoint's format under a tracefs root or instance (None: no
    such tracepoint)."""
    try:
        with open(os.path.join(root, "events", category, name, "format")) as f:
            text = f.read()
    except OSError:
        return None
    return set(re.findall(r"field:[^;]*?\b(\w+)(?:\[\d*\])?;", text))
