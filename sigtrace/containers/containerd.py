"""containerd without its gRPC API: the OCI bundles its runtime v2 shims keep under /run.

<state_root>/<namespace>/<id>/config.json is the OCI spec; containerd's CRI plugin (Kubernetes,
namespace k8s.io) writes the pod and container names into its annotations. init.pid beside it
holds the host pid of the container's PID 1. Docker's containers appear too, in namespace moby,
without names: the Docker reader knows those better.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from sigtrace.containers.records import (
    CRI_POD_KEYS,
    RuntimeContainer,
    load_json_object,
    pod_from_labels,
    read_pid_file,
    str_map,
)
from sigtrace.errors import ContainerNotFound, RuntimeAbsent, RuntimeUnavailable
from sigtrace.escape import printable

DEFAULT_STATE_ROOT = "/run/containerd/io.containerd.runtime.v2.task"
CONTAINER_NAME = "io.kubernetes.cri.container-name"
CONTAINER_TYPE = "io.kubernetes.cri.container-type"  # 'sandbox' or 'container'
IMAGE_NAME = "io.kubernetes.cri.image-name"
NERDCTL_NAME = "nerdctl/name"
# containerd ids and namespaces: never a '/', so never a path outside the state root.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


def container_from_bundle(cid: str, spec: Mapping[str, object], pid: int = 0) -> RuntimeContainer:
    """From a bundle's OCI config.json (its annotations) and its init.pid."""
    annotations = str_map(spec.get("annotations"))
    sandbox = annotations.get(CONTAINER_TYPE) == "sandbox"
    pod = pod_from_labels(annotations, CRI_POD_KEYS)
    name = annotations.get(CONTAINER_NAME) or annotations.get(NERDCTL_NAME)
    if sandbox and pod is not None:
        name = pod.name  # a sandbox has no container name: it stands for the pod
    return RuntimeContainer(
        id=cid,
        name=name or None,
        runtime="containerd",
        image=annotations.get(IMAGE_NAME) or None,
        pid=pid,
        labels=annotations,
        pod=pod,
        sandbox=sandbox,
    )


class ContainerdBundles:
    runtime = "containerd"

    def __init__(
        self, state_root: str = DEFAULT_STATE_ROOT, namespaces: tuple[str, ...] | None = None
    ) -> None:
        self.state_root = state_root
        self.namespaces = namespaces  # None: every namespace found

    def list_containers(self) -> list[RuntimeContainer]:
        out = []
        for ns in self._namespaces():
            for cid in _listdir(os.path.join(self.state_root, ns)):
                if _NAME.match(cid) and (c := self._read(ns, cid)) is not None:
                    out.append(c)
        return out

    def inspect(self, cid: str) -> RuntimeContainer:
        """By full id (bundle directories are named by it)."""
        if _NAME.match(cid):
            for ns in self._namespaces():
                if (c := self._read(ns, cid)) is not None:
                    return c
        raise ContainerNotFound(f"no containerd task {printable(cid)!r} under {self.state_root}")

    def _namespaces(self) -> list[str]:
        if not os.path.lexists(self.state_root):
            # The shims make it at the first task: none ran since boot, or no containerd here.
            raise RuntimeAbsent(f"containerd: no {self.state_root}")
        try:
            found = os.listdir(self.state_root)
        except OSError as e:
            raise RuntimeUnavailable(
                f"containerd: {self.state_root}: {e.strerror or e} (the host's /run not mounted?)"
            ) from None
        if self.namespaces is not None:
            return [ns for ns in self.namespaces if _NAME.match(ns)]
        return sorted(ns for ns in found if _NAME.match(ns))

    def _read(self, ns: str, cid: str) -> RuntimeContainer | None:
        bundle = os.path.join(self.state_root, ns, cid)
        spec = load_json_object(os.path.join(bundle, "config.json"))
        if spec is None:
            return None
        return container_from_bundle(cid, spec, read_pid_file(os.path.join(bundle, "init.pid")))


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
