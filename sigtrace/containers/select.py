"""--container / --pod: what the user named → the cgroup ids the kernel filters on.

Follows its containers: with --wait a name that does not exist yet is looked up again until it
does, and a container restarted under the same name or id (a new cgroup) is picked up again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sigtrace.containers.cache import ContainerCache
from sigtrace.containers.cgroup_ids import CgroupIds, Hierarchy
from sigtrace.containers.records import RuntimeContainer
from sigtrace.errors import ContainerNotFound, RuntimeUnavailable, UsageError
from sigtrace.procfs import Procfs

# What runtimes accept as a container name or id (Docker's rule; containerd's and Kubernetes'
# are narrower), and Kubernetes' bounds on a pod's name and namespace. A value outside them
# can match nothing, so it is refused before any runtime is asked (and before --wait waits
# for it forever). Values are shown with repr(): a newline or an ESC in argv stays inert.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_CONTAINER = 255
MAX_POD_NAME = 253
MAX_NAMESPACE = 63


def _check_name(option: str, text: str, value: str, what: str, limit: int) -> None:
    if not value:
        raise UsageError(f"{option} {text!r}: empty {what}")
    if len(value) > limit:
        raise UsageError(f"{option}: {what} of {len(value)} characters (at most {limit})")
    if not _NAME.fullmatch(value):
        raise UsageError(
            f"{option} {text!r}: not a {what} (letters, digits, '_', '.', '-'; "
            "a letter or digit first)"
        )


def check_container(text: str) -> str:
    """A --container value as typed (`/name` as Docker prints it is fine); UsageError if it
    cannot be a container name, id or id prefix."""
    value = text.strip().removeprefix("/")
    _check_name("--container", text, value, "container name or id", MAX_CONTAINER)
    return text


def parse_pod(text: str) -> tuple[str | None, str]:
    ns, sep, name = text.strip().rpartition("/")
    if sep:
        _check_name("--pod", text, ns, "namespace", MAX_NAMESPACE)
    _check_name("--pod", text, name, "pod name", MAX_POD_NAME)
    return (ns or None), name


@dataclass
class Selection:
    """One --container or --pod argument and what it matched so far."""

    kind: str  # "container" | "pod"
    query: str
    matched: dict[str, int] = field(default_factory=dict)  # container id -> pid seen

    def label(self) -> str:
        return f"{self.kind} {self.query}"


class ContainerSelector:
    def __init__(
        self,
        cache: ContainerCache,
        cgroups: CgroupIds,
        procfs: Procfs,
        containers: tuple[str, ...],
        pods: tuple[str, ...],
        wait: bool,
    ) -> None:
        self.cache = cache
        self.cgroups = cgroups
        self.procfs = procfs
        self.wait = wait
        self.selections = [Selection("container", q) for q in containers]
        self.selections += [Selection("pod", q) for q in pods]
        for q in containers:
            check_container(q)
        for q in pods:
            parse_pod(q)
        self.ids: set[int] = set()
        self.waiting: dict[str, str] = {}  # --wait: selection label -> why nothing matched yet

    @property
    def active(self) -> bool:
        return bool(self.selections)

    def initial(self) -> set[int]:
        """Resolve everything once; without --wait, a name that matches nothing is an error.
        With --wait nothing is: a runtime that is down now may answer later (`waiting`)."""
        for sel in self.selections:
            try:
                self._refresh(sel)
            except (ContainerNotFound, RuntimeUnavailable) as e:
                if not self.wait:
                    raise
                self.waiting[sel.label()] = e.message
            if not sel.matched and not self.wait:
                raise ContainerNotFound(
                    f"{sel.label()} has no running process to trace (start it, or use --wait)"
                )
        return set(self.ids)

    def poll(self) -> set[int]:
        """New cgroup ids since the last call: containers that appeared or restarted."""
        before = set(self.ids)
        for sel in self.selections:
            try:
                self._refresh(sel)
            except (ContainerNotFound, RuntimeUnavailable):
                continue  # gone for now, or its runtime is down: --wait or a restart bring it back
        return self.ids - before

    def _matches(self, sel: Selection) -> list[RuntimeContainer]:
        if sel.kind == "pod":
            return self.cache.pod_members(*parse_pod(sel.query))
        return self.cache.resolve(sel.query)

    def _refresh(self, sel: Selection) -> None:
        for c in self._matches(sel):
            if c.pid <= 0:
                # No pid from the runtime: find its cgroups by id (once), if it has any.
                if c.runtime == "unknown" and c.id not in sel.matched:
                    ids = self.cgroups.ids_of_container(c.id)
                    if ids:
                        sel.matched[c.id] = 0
                        self.ids |= ids
                continue
            if sel.matched.get(c.id) == c.pid:
                continue  # nothing new since last time
            ids = self.cgroup_ids_of(c.pid)
            if ids:
                sel.matched[c.id] = c.pid
                self.ids |= ids

    def cgroup_ids_of(self, pid: int) -> set[int]:
        info = self.procfs.cgroup(pid)
        if info is None:
            return set()
        out = set()
        paths: tuple[tuple[str | None, Hierarchy], ...] = (
            (info.v2_path, "v2"),
            (info.v1_paths.get("pids"), "v1pids"),
        )
        for path, hierarchy in paths:
            if path and path != "/" and (i := self.cgroups.id_of(path, hierarchy)) is not None:
                out.add(i)
        return out
