"""Container id → RuntimeContainer through the runtime readers, cached. Pure apart from the readers.

Tracing never depends on a runtime: a failed lookup yields a record with only the id and the
runtime, remembered for `retry_s` so that a dead socket is not asked once per event. A container
reported gone keeps its entry for `grace_s`, so the last events of a stopping container
(SIGTERM, SIGKILL, the namespace teardown) still get its name.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sigtrace.containers.cgroup_path import ContainerRef
from sigtrace.containers.records import RuntimeContainer
from sigtrace.errors import ContainerNotFound, RuntimeAbsent, RuntimeUnavailable, SigtraceError
from sigtrace.escape import printable

_FULL_ID = re.compile(r"^[0-9a-f]{64}$")
_ID_PREFIX = re.compile(r"^[0-9a-f]{3,64}$")
MAX_NAMES_SHOWN = 20


class Reader(Protocol):
    runtime: str

    def inspect(self, cid: str) -> RuntimeContainer: ...

    def list_containers(self) -> list[RuntimeContainer]: ...


@dataclass(frozen=True)
class RuntimeState:
    runtime: str
    state: str  # answered (maybe with no containers) | failed (installed, no answer) | absent
    detail: str  # answered: how many containers; else why


@dataclass
class Listing:
    """What the runtimes said when asked for all their containers."""

    found: list[tuple[RuntimeContainer, Reader]] = field(default_factory=list)
    runtimes: list[RuntimeState] = field(default_factory=list)

    def _details(self, state: str) -> list[str]:
        return [r.detail for r in self.runtimes if r.state == state]

    @property
    def answered(self) -> list[str]:
        return [r.runtime for r in self.runtimes if r.state == "answered"]

    @property
    def failed(self) -> list[str]:
        return self._details("failed")

    @property
    def absent(self) -> list[str]:
        return self._details("absent")


@dataclass
class _Entry:
    record: RuntimeContainer
    expires: float | None  # None: kept until reported gone (or evicted as least recently used)


class ContainerCache:
    def __init__(
        self,
        readers: Sequence[Reader],
        grace_s: float = 5.0,
        retry_s: float = 2.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.readers = list(readers)
        self.grace_s = grace_s
        self.retry_s = retry_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    # Enrichment: never raises for a runtime's sake.

    def get(self, cid: str, runtime: str = "unknown") -> RuntimeContainer:
        now = self._clock()
        entry = self._entries.get(cid)
        if entry is not None and (entry.expires is None or now < entry.expires):
            self._entries.move_to_end(cid)
            return entry.record
        record = self._lookup(cid, runtime)
        expires = None if record is not None else now + self.retry_s
        if record is None:
            record = RuntimeContainer(id=cid, runtime=runtime)
        self._store(cid, _Entry(record, expires))
        return record

    def lookup(self, ref: ContainerRef) -> RuntimeContainer:
        return self.get(ref.id, ref.runtime)

    def mark_gone(self, cid: str) -> None:
        """The container stopped: keep its entry for the grace period, then forget it."""
        entry = self._entries.get(cid)
        if entry is not None:
            entry.expires = self._clock() + self.grace_s

    def expires_in(self) -> float | None:
        """Seconds until expire() has an entry to drop (None: no entry has a time limit)."""
        times = [e.expires for e in self._entries.values() if e.expires is not None]
        return max(0.0, min(times) - self._clock()) if times else None

    def expire(self) -> int:
        """Drop entries whose time is up; returns how many."""
        now = self._clock()
        dead = [k for k, e in self._entries.items() if e.expires is not None and now >= e.expires]
        for k in dead:
            del self._entries[k]
        return len(dead)

    def __len__(self) -> int:
        return len(self._entries)

    def _lookup(self, cid: str, runtime: str) -> RuntimeContainer | None:
        for reader in self._readers_for(runtime):
            try:
                return reader.inspect(cid)
            except (SigtraceError, OSError, ValueError):
                continue  # not this runtime's, or the runtime is down: try the next
        return None

    def _readers_for(self, runtime: str) -> list[Reader]:
        if runtime == "unknown":
            return self.readers
        return [r for r in self.readers if r.runtime == runtime]

    def _store(self, cid: str, entry: _Entry) -> None:
        self._entries[cid] = entry
        self._entries.move_to_end(cid)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    # Resolution of what a user typed (--container): raises the project's errors.

    def resolve(self, query: str) -> list[RuntimeContainer]:
        """Containers matching a full id, else a name, else a unique id prefix (≥ 3 hex)."""
        query = query.strip().removeprefix("/")
        if not query:
            raise ContainerNotFound("empty container name")
        listing = self.list_all()
        if not listing.answered and listing.failed:
            if _FULL_ID.match(query):  # trace it anyway; names can come later
                return [RuntimeContainer(id=query, runtime="unknown")]
            raise RuntimeUnavailable("cannot list containers: " + "; ".join(listing.failed))
        matches = _match(query, [c for c, _ in listing.found])
        readers = {id(c): r for c, r in listing.found}
        if matches:
            return [self._complete(c, readers[id(c)]) for c in matches]
        raise ContainerNotFound(_not_found(f"container {printable(query)!r}", listing))

    def pod_members(self, namespace: str | None, name: str) -> list[RuntimeContainer]:
        """Every container (sandbox included) of the pods with this name (in this namespace)."""
        listing = self.list_all()
        if not listing.answered and listing.failed:
            raise RuntimeUnavailable("cannot list containers: " + "; ".join(listing.failed))
        found = [
            self._complete(c, r)
            for c, r in listing.found
            if c.pod is not None
            and c.pod.name == name
            and (namespace is None or c.pod.namespace == namespace)
        ]
        if not found:
            where = f" in namespace {printable(namespace)!r}" if namespace else ""
            raise ContainerNotFound(_not_found(f"pod {printable(name)!r}{where}", listing))
        return found

    def list_all(self) -> Listing:
        """Every container once (the first reader to list an id wins), and how each runtime
        answered: a runtime that is not installed is absent, not failed."""
        seen: set[str] = set()
        out = Listing()
        for reader in self.readers:
            try:
                found = reader.list_containers()
            except RuntimeAbsent as e:
                out.runtimes.append(RuntimeState(reader.runtime, "absent", e.message))
                continue
            except (SigtraceError, OSError, ValueError) as e:
                why = getattr(e, "message", None) or f"{reader.runtime}: {e}"
                out.runtimes.append(RuntimeState(reader.runtime, "failed", why))
                continue
            n = len(found)
            out.runtimes.append(RuntimeState(reader.runtime, "answered", f"{n} container(s)"))
            for c in found:
                if c.id and c.id not in seen:
                    seen.add(c.id)
                    out.found.append((c, reader))
        return out

    def _complete(self, c: RuntimeContainer, reader: Reader) -> RuntimeContainer:
        """A listing can lack pid and stop signal (Docker's does): inspect each match once."""
        try:
            full = reader.inspect(c.id)
        except (SigtraceError, OSError, ValueError):
            return c
        self._store(full.id, _Entry(full, None))
        return full


def _match(query: str, containers: list[RuntimeContainer]) -> list[RuntimeContainer]:
    exact = [c for c in containers if c.id == query]
    if exact:
        return exact
    named = [c for c in containers if c.name == query]
    if named:
        return named  # one name can be several containers (same container name in two pods)
    if not _ID_PREFIX.match(query):
        return []
    prefixed = [c for c in containers if c.id.startswith(query)]
    if len(prefixed) > 1:
        shown = ", ".join(f"{c.id[:12]} ({_label(c)})" for c in prefixed[:MAX_NAMES_SHOWN])
        raise ContainerNotFound(f"{query!r} matches {len(prefixed)} containers: {shown}")
    return prefixed


def _label(c: RuntimeContainer) -> str:
    return printable(c.name) if c.name else c.id[:12]


def _not_found(what: str, listing: Listing) -> str:
    names = sorted({_label(c) for c, _ in listing.found})
    if names:
        more = len(names) - MAX_NAMES_SHOWN
        known = "containers: " + ", ".join(names[:MAX_NAMES_SHOWN])
        known += f" (and {more} more)" if more > 0 else ""
    elif listing.answered:
        known = "no containers at all (" + ", ".join(listing.answered) + " answered)"
    else:
        known = "no container runtime found here (" + "; ".join(listing.absent) + ")"
    unasked = f"; not reachable: {'; '.join(listing.failed)}" if listing.failed else ""
    return f"no {what}; {known}{unasked}"
