"""CRI-O without its API: the OCI config.json it writes into each container's userdata.

<root>/<id>/userdata/config.json carries the kubelet's io.kubernetes.pod.* labels as
annotations; conmon writes the container's host pid to userdata/pidfile. Podman uses the same
storage layout (under its own root): its entries have no CRI-O annotations and are reported as
runtime 'podman', without names.
"""

from __future__ import annotations

import dataclasses
import os
import re

from sigtrace.containers.records import (
    RuntimeContainer,
    load_json_object,
    pod_from_labels,
    read_pid_file,
    str_map,
)
from sigtrace.errors import ContainerNotFound, RuntimeAbsent, RuntimeUnavailable
from sigtrace.escape import printable

DEFAULT_ROOT = "/run/containers/storage/overlay-containers"
CONTAINER_TYPE = "io.kubernetes.cri-o.ContainerType"  # 'sandbox' or 'container'
IMAGE_NAME = "io.kubernetes.cri-o.ImageName"
_CRIO_PREFIX = "io.kubernetes.cri-o."
_ID = re.compile(r"^[0-9a-f]{64}$")  # storage ids; never a path outside the root


def container_from_crio_config(cid: str, spec: dict, pid: int = 0) -> RuntimeContainer:
    """From a container's userdata/config.json (its annotations) and its pidfile."""
    annotations = str_map(spec.get("annotations"))
    sandbox = annotations.get(CONTAINER_TYPE) == "sandbox"
    pod = pod_from_labels(annotations)
    name = None
    if pod is not None:
        if sandbox:  # a sandbox stands for the pod; it has no container of its own
            pod = dataclasses.replace(pod, container=None)
        name = pod.name if sandbox else pod.container
    is_crio = any(k.startswith(_CRIO_PREFIX) for k in annotations)
    return RuntimeContainer(
        id=cid,
        name=name,
        runtime="cri-o" if is_crio else "podman",
        image=annotations.get(IMAGE_NAME) or None,
        pid=pid,
        labels=annotations,
        pod=pod,
        sandbox=sandbox,
    )


class CrioStorage:
    runtime = "cri-o"

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = root

    def list_containers(self) -> list[RuntimeContainer]:
        out = []
        for cid in sorted(self._ids()):
            if (c := self._read(cid)) is not None:
                out.append(c)
        return out

    def inspect(self, cid: str) -> RuntimeContainer:
        """By full id (storage directories are named by it)."""
        if not os.path.isdir(self.root):
            raise self._unavailable(OSError())
        found = self._read(cid) if _ID.match(cid) else None
        if found is None:
            raise ContainerNotFound(f"no CRI-O container {printable(cid)!r} under {self.root}")
        return found

    def _ids(self) -> list[str]:
        try:
            return [n for n in os.listdir(self.root) if _ID.match(n)]
        except OSError as e:
            raise self._unavailable(e) from None

    def _unavailable(self, e: OSError) -> RuntimeUnavailable:
        if not os.path.lexists(self.root):  # neither CRI-O nor Podman has run here
            return RuntimeAbsent(f"cri-o: no {self.root}")
        return RuntimeUnavailable(
            f"cri-o: {self.root}: {e.strerror or 'not readable'} (the host's /run not mounted?)"
        )

    def _read(self, cid: str) -> RuntimeContainer | None:
        userdata = os.path.join(self.root, cid, "userdata")
        spec = load_json_object(os.path.join(userdata, "config.json"))
        if spec is None:
            return None
        pid = read_pid_file(os.path.join(userdata, "pidfile"))
        return container_from_crio_config(cid, spec, pid)
