"""CRI-O and Podman without their APIs: the containers/storage directories both keep.

Both store each container under <storage>/overlay-containers/<id>/userdata:
- CRI-O writes the OCI config.json into the run root's copy (/run/containers/storage/...), with
  the kubelet's io.kubernetes.pod.* labels as annotations; conmon writes the container's host
  pid to userdata/pidfile beside it.
- Podman (rootful) writes config.json into the graph root's copy (/var/lib/containers/storage/
  ...), marked io.container.manager=libpod, and the pidfile into the run root's. Its names are
  in the graph root's containers.json (the storage library's own index); its labels are in a
  database we do not read.
A config.json names its manager, so neither reader reports the other's containers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping

from sigtrace.containers.records import (
    RuntimeContainer,
    load_json,
    load_json_object,
    pod_from_labels,
    read_pid_file,
    str_map,
    str_or_none,
)
from sigtrace.errors import ContainerNotFound, RuntimeAbsent, RuntimeUnavailable
from sigtrace.escape import printable

DEFAULT_ROOT = "/run/containers/storage/overlay-containers"  # CRI-O's config; Podman's pids
DEFAULT_PODMAN_ROOT = "/var/lib/containers/storage/overlay-containers"
CONTAINER_TYPE = "io.kubernetes.cri-o.ContainerType"  # 'sandbox' or 'container'
IMAGE_NAME = "io.kubernetes.cri-o.ImageName"
MANAGER = "io.container.manager"  # 'libpod' on Podman's containers
STOP_SIGNAL = "org.opencontainers.image.stopSignal"  # Podman writes the container's, e.g. '15'
_ID = re.compile(r"^[0-9a-f]{64}$")  # storage ids; never a path outside the root
_INDEX = "containers.json"


def container_from_crio_config(
    cid: str, spec: Mapping[str, object], pid: int = 0
) -> RuntimeContainer:
    """From a container's userdata/config.json (its annotations) and its pidfile."""
    annotations = str_map(spec.get("annotations"))
    sandbox = annotations.get(CONTAINER_TYPE) == "sandbox"
    pod = pod_from_labels(annotations)
    name = None
    if pod is not None:
        if sandbox:  # a sandbox stands for the pod; it has no container of its own
            pod = dataclasses.replace(pod, container=None)
        name = pod.name if sandbox else pod.container
    return RuntimeContainer(
        id=cid,
        name=name,
        runtime="podman" if annotations.get(MANAGER) == "libpod" else "cri-o",
        image=annotations.get(IMAGE_NAME) or None,
        pid=pid,
        labels=annotations,
        pod=pod,
        sandbox=sandbox,
    )


class _Storage:
    """One overlay-containers directory of containers/storage, read as one runtime's."""

    runtime: str
    host_dir: str  # what a container running sigtrace must mount from the host

    def __init__(self, root: str, run_root: str | None = None) -> None:
        self.root = root  # where config.json is
        self.run_root = run_root or root  # where the pidfile is

    def list_containers(self) -> list[RuntimeContainer]:
        return [c for cid in sorted(self._ids()) if (c := self._read(cid)) is not None]

    def inspect(self, cid: str) -> RuntimeContainer:
        """By full id (storage directories are named by it)."""
        if not os.path.isdir(self.root):
            raise self._unavailable(OSError())
        found = self._read(cid) if _ID.match(cid) else None
        if found is None:
            raise ContainerNotFound(
                f"no {self.runtime} container {printable(cid)!r} under {self.root}"
            )
        return found

    def _ids(self) -> list[str]:
        try:
            return [n for n in os.listdir(self.root) if _ID.match(n)]
        except OSError as e:
            raise self._unavailable(e) from None

    def _unavailable(self, e: OSError) -> RuntimeUnavailable:
        if not os.path.lexists(self.root):  # this runtime has never run here
            return RuntimeAbsent(f"{self.runtime}: no {self.root}")
        return RuntimeUnavailable(
            f"{self.runtime}: {self.root}: {e.strerror or 'not readable'}"
            f" (the host's {self.host_dir} not mounted?)"
        )

    def _read(self, cid: str) -> RuntimeContainer | None:
        spec = load_json_object(os.path.join(self.root, cid, "userdata", "config.json"))
        if spec is None:
            return None
        pid = read_pid_file(os.path.join(self.run_root, cid, "userdata", "pidfile"))
        c = container_from_crio_config(cid, spec, pid)
        return c if c.runtime == self.runtime else None


class CrioStorage(_Storage):
    runtime = "cri-o"
    host_dir = "/run"

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        super().__init__(root)


class PodmanStorage(_Storage):
    """Rootful Podman: config.json and names under the graph root, pids under the run root."""

    runtime = "podman"
    host_dir = "/var/lib/containers"

    def __init__(self, root: str = DEFAULT_PODMAN_ROOT, run_root: str = DEFAULT_ROOT) -> None:
        super().__init__(root, run_root)

    def list_containers(self) -> list[RuntimeContainer]:
        index = _index(os.path.join(self.root, _INDEX))
        return [_named(c, index) for c in super().list_containers()]

    def inspect(self, cid: str) -> RuntimeContainer:
        return _named(super().inspect(cid), _index(os.path.join(self.root, _INDEX)))


def _named(
    c: RuntimeContainer, index: dict[str, tuple[str | None, str | None]]
) -> RuntimeContainer:
    name, image = index.get(c.id, (None, None))
    stop = c.labels.get(STOP_SIGNAL) or None
    return dataclasses.replace(c, name=name, image=image or c.image, stop_signal=stop)


def _index(path: str) -> dict[str, tuple[str | None, str | None]]:
    """Id → (first name, image name), from containers/storage's own index of its containers."""
    out: dict[str, tuple[str | None, str | None]] = {}
    entries = load_json(path)
    for e in entries if isinstance(entries, list) else []:
        if not isinstance(e, dict) or not isinstance(e.get("id"), str):
            continue
        names = e.get("names")
        name = str_or_none(names[0]) if isinstance(names, list) and names else None
        try:  # the storage library keeps the caller's metadata as a JSON string
            meta = json.loads(e.get("metadata") or "{}")
        except (TypeError, ValueError):
            meta = None
        image = str_or_none(meta.get("image-name")) if isinstance(meta, dict) else None
        out[e["id"]] = (name, image)
    return out
