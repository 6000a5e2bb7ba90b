"""Names for the processes in records: cmdline from /proc, container and pod from the cgroup
ids the kernel side recorded. The edge where runtimes are asked; never blocks tracing on one
being down (the cache remembers failures, and a record without a name still has the id).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, NotRequired, TypedDict

from sigtrace import wire
from sigtrace.containers import containerd, crio, docker
from sigtrace.containers.cache import ContainerCache
from sigtrace.containers.cgroup_ids import CgroupIds, Hierarchy
from sigtrace.containers.cgroup_path import ContainerRef, container_from_path, container_of
from sigtrace.containers.containerd import ContainerdBundles
from sigtrace.containers.crio import CrioStorage, PodmanStorage
from sigtrace.containers.docker import DockerClient
from sigtrace.containers.records import RuntimeContainer
from sigtrace.correlate import basic_process
from sigtrace.procfs import Procfs


def default_cache() -> ContainerCache:
    """The runtimes' default paths, each overridable (a DaemonSet may mount them elsewhere)."""
    env = os.environ.get
    return ContainerCache(
        [
            DockerClient(
                socket_path=env("SIGTRACE_DOCKER_SOCKET", docker.DEFAULT_SOCKET),
                data_root=env("SIGTRACE_DOCKER_ROOT", docker.DEFAULT_DATA_ROOT),
            ),
            ContainerdBundles(env("SIGTRACE_CONTAINERD_STATE", containerd.DEFAULT_STATE_ROOT)),
            CrioStorage(env("SIGTRACE_CRIO_ROOT", crio.DEFAULT_ROOT)),
            PodmanStorage(
                env("SIGTRACE_PODMAN_ROOT", crio.DEFAULT_PODMAN_ROOT),
                env("SIGTRACE_PODMAN_RUNROOT", crio.DEFAULT_ROOT),
            ),
        ]
    )


class PodObject(TypedDict):
    name: str
    namespace: str
    uid: str | None
    container: str | None


class ContainerObject(TypedDict):
    """A process object's `container`."""

    id: str
    name: str | None
    runtime: str
    image: str | None
    pod: NotRequired[PodObject]  # only a pod's container has one


def container_object(c: RuntimeContainer) -> ContainerObject:
    out: ContainerObject = {"id": c.id, "name": c.name, "runtime": c.runtime, "image": c.image}
    if c.pod is not None:
        out["pod"] = {
            "name": c.pod.name,
            "namespace": c.pod.namespace,
            "uid": c.pod.uid,
            "container": c.pod.container,
        }
    return out


class ContainerResolver:
    """Task → ContainerRef, by cgroup id (cached: ids are not reused while we run)."""

    def __init__(self, cgroups: CgroupIds, procfs: Procfs, max_cached: int = 4096) -> None:
        self.cgroups = cgroups
        self.procfs = procfs
        self._refs: OrderedDict[tuple[int, int], ContainerRef | None] = OrderedDict()
        self.max_cached = max_cached

    def ref_of(self, task: wire.Task) -> ContainerRef | None:
        key = (task.cgroup_id, task.cgroup_v1_id)
        try:
            return self._refs[key]
        except KeyError:
            pass
        ref = self._resolve(task)
        self._refs[key] = ref
        if len(self._refs) > self.max_cached:
            self._refs.popitem(last=False)
        return ref

    def _resolve(self, task: wire.Task) -> ContainerRef | None:
        ids: tuple[tuple[int, Hierarchy], ...] = (
            (task.cgroup_id, "v2"),
            (task.cgroup_v1_id, "v1pids"),
        )
        for cg_id, hierarchy in ids:
            if cg_id <= 1:  # 0: not recorded; 1: a hierarchy's root, the host
                continue
            path = self.cgroups.path_of(cg_id, hierarchy)
            if path is not None:
                return container_from_path(path)
        # The cgroup directory is gone already (a container that just stopped): ask /proc.
        paths = self.procfs.cgroup(task.pid) if task.pid is not None else None
        return container_of(paths) if paths else None


class ProcessDescriber:
    """`describe` for the correlator: the recorded ids plus the target's cmdline.

    The cmdline is read once per process, when it is first seen (later, a dying process's
    cmdline is empty), and forgotten when it exits.
    """

    def __init__(self, procfs: Procfs, max_cached: int = 8192) -> None:
        self.procfs = procfs
        self._cmdlines: OrderedDict[int, str | None] = OrderedDict()
        self.max_cached = max_cached

    def cmdline(self, pid: int) -> str | None:
        try:
            return self._cmdlines[pid]
        except KeyError:
            pass
        value = self.procfs.cmdline(pid)
        self._cmdlines[pid] = value
        if len(self._cmdlines) > self.max_cached:
            self._cmdlines.popitem(last=False)
        return value

    def forget(self, pid: int) -> None:
        self._cmdlines.pop(pid, None)

    def __call__(self, task: wire.Task, role: str) -> dict[str, Any]:
        out = basic_process(task, role)
        if role != "sender":
            out["cmdline"] = self.cmdline(task.pid) if task.pid is not None else None
        return out


class ContainerDescriber(ProcessDescriber):
    """`describe` with `container` (and its `pod`) on every process object."""

    def __init__(self, procfs: Procfs, resolver: ContainerResolver, cache: ContainerCache) -> None:
        super().__init__(procfs)
        self.resolver = resolver
        self.cache = cache

    def __call__(self, task: wire.Task, role: str) -> dict[str, Any]:
        out = super().__call__(task, role)
        ref = self.resolver.ref_of(task)
        out["container"] = container_object(self.cache.lookup(ref)) if ref else None
        return out
