"""Which container (and pod) a process is in, from its cgroup paths. Pure: text in, records out.

One path component names the container; the deepest one wins (a pod inside a kind node names
the pod's container, not the node's):
  systemd driver   docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope,
                   nerdctl-<id>.scope, libpod-<id>.scope (payload maybe in a `container` child)
  cgroupfs driver  /docker/<id>, /kubepods[/burstable|/besteffort]/pod<uid>/<id>,
                   crio-<id>, libpod-<id>
The conmon cgroups of CRI-O and Podman (crio-conmon-<id>, libpod-conmon-<id>) hold the host-side
monitor, not the container. Pod uid and QoS class come from the components above the container.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sigtrace.procfs import CgroupPaths, parse_cgroup

_ID = r"[0-9a-f]{64}"
_CONTAINER = re.compile(rf"^(?P<prefix>[a-z][a-z-]*-)?(?P<id>{_ID})(?:\.scope)?$")
_PREFIX_RUNTIME = {
    "docker-": "docker",
    "cri-containerd-": "containerd",
    "nerdctl-": "containerd",
    "crio-": "cri-o",
    "libpod-": "podman",
}
# A bare id is the cgroupfs convention of every runtime; its parent sometimes says which.
_PARENT_RUNTIME = {"docker": "docker", "libpod_parent": "podman"}

_UID = r"[0-9a-f][0-9a-f_-]{30,40}"  # uuid; or 32 hex for static pods (config hash)
_POD_CGROUPFS = re.compile(rf"^pod(?P<uid>{_UID})$")
_POD_SYSTEMD = re.compile(
    rf"^(?:[a-z0-9_-]*-)?kubepods(?:-(?P<qos>burstable|besteffort))?-pod(?P<uid>{_UID})\.slice$"
)
_QOS_SYSTEMD = re.compile(r"^(?:[a-z0-9_-]*-)?kubepods-(?P<qos>burstable|besteffort)\.slice$")
_QOS_NAMES = ("burstable", "besteffort")

# A v1 path is read when the v2 one names no container; these controllers first.
_V1_PREFERRED = ("name=systemd", "pids", "memory")


@dataclass(frozen=True)
class ContainerRef:
    id: str  # the full 64-hex id
    runtime: str  # 'docker' | 'containerd' | 'cri-o' | 'podman' | 'unknown'
    pod_uid: str | None = None  # with dashes, as the API server writes it
    qos: str | None = None  # 'guaranteed' | 'burstable' | 'besteffort' (Kubernetes only)


@dataclass(frozen=True)
class CgroupInfo:
    v2_path: str | None = None
    v1_paths: dict[str, str] = field(default_factory=dict)  # controller (or name=...) → path
    container: ContainerRef | None = None


def parse_proc_cgroup(text: str) -> CgroupInfo:
    """Parse /proc/<pid>/cgroup (v1, v2 or hybrid), and name its container. Pure."""
    paths = parse_cgroup(text)
    return CgroupInfo(paths.v2_path, paths.v1_paths, container_of(paths))


def container_of(paths: CgroupPaths) -> ContainerRef | None:
    """The container a process's cgroup paths name: the v2 path's, else a v1 controller's."""
    return _pick_container(paths.v2_path, paths.v1_paths)


def _pick_container(v2_path: str | None, v1_paths: dict[str, str]) -> ContainerRef | None:
    if v2_path is not None and (ref := container_from_path(v2_path)):
        return ref
    rest = sorted(c for c in v1_paths if c not in _V1_PREFERRED)
    for controller in (*_V1_PREFERRED, *rest):
        path = v1_paths.get(controller)
        if path is not None and (ref := container_from_path(path)):
            return ref
    return None


def container_from_path(path: str) -> ContainerRef | None:
    """The container a single cgroup path names, or None (host process, or `/` in a cgroupns)."""
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    for i in range(len(parts) - 1, -1, -1):
        found = _container_component(parts[i], parts[i - 1] if i else "")
        if found is not None:
            pod_uid, qos = _pod_of(parts[:i])
            return ContainerRef(id=found[0], runtime=found[1], pod_uid=pod_uid, qos=qos)
    return None


def _container_component(part: str, parent: str) -> tuple[str, str] | None:
    """(id, runtime) when this component is a container's cgroup."""
    m = _CONTAINER.match(part)
    if m is None:
        return None
    prefix = m["prefix"]
    if prefix is None:  # e.g. kubelet's cgroupfs layout, which any CRI runtime may fill
        return m["id"], _PARENT_RUNTIME.get(parent, "unknown")
    runtime = _PREFIX_RUNTIME.get(prefix)  # crio-conmon-, libpod-conmon-: host side, no match
    return (m["id"], runtime) if runtime else None


def _pod_of(ancestors: list[str]) -> tuple[str | None, str | None]:
    """(pod uid, QoS class) from the components above a container, if it is in a pod."""
    uid = qos = None
    in_kubepods = False
    for part in ancestors:
        if part == "kubepods" or (part.endswith(".slice") and "kubepods" in part):
            in_kubepods = True
        if (m := _POD_CGROUPFS.match(part) or _POD_SYSTEMD.match(part)) is not None:
            uid = m["uid"].replace("_", "-")  # systemd unit names cannot hold dashes in a uid
            qos = m.groupdict().get("qos") or qos
        elif part in _QOS_NAMES and in_kubepods:
            qos = part
        elif (m := _QOS_SYSTEMD.match(part)) is not None:
            qos = m["qos"]
    if uid is None:
        return None, None
    return uid, qos or ("guaranteed" if in_kubepods else None)
