"""The records every runtime reader returns, and the small helpers the readers share.

Everything here comes from containers and runtimes, so it is untrusted text: kept as data,
never evaluated, escaped only when printed.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field

# Runtime metadata files are small; a huge one is corrupt or hostile.
MAX_JSON_BYTES = 16 << 20

# Docker (dockershim/cri-dockerd) labels and CRI-O annotations use these keys.
KUBE_POD_KEYS = (
    "io.kubernetes.pod.name",
    "io.kubernetes.pod.namespace",
    "io.kubernetes.pod.uid",
    "io.kubernetes.container.name",
)
# containerd's CRI plugin writes these annotations into the OCI spec.
CRI_POD_KEYS = (
    "io.kubernetes.cri.sandbox-name",
    "io.kubernetes.cri.sandbox-namespace",
    "io.kubernetes.cri.sandbox-uid",
    "io.kubernetes.cri.container-name",
)


@dataclass(frozen=True)
class PodRef:
    name: str
    namespace: str
    uid: str | None = None
    container: str | None = None  # None for a pod sandbox (pause)


@dataclass(frozen=True)
class RuntimeContainer:
    id: str
    name: str | None = None
    runtime: str = "docker"
    image: str | None = None
    pid: int = 0  # host pid of the container's PID 1; 0 when not running or not known
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str | None = None
    pod: PodRef | None = None
    sandbox: bool = False  # a Kubernetes pod sandbox (pause container), not a workload


def pod_from_labels(
    labels: Mapping[str, str], keys: tuple[str, ...] = KUBE_POD_KEYS
) -> PodRef | None:
    """A PodRef from labels/annotations, or None when the pod's name or namespace is missing."""
    name, namespace, uid, container = (labels.get(k) or None for k in keys)
    if not name or not namespace:
        return None
    return PodRef(name=name, namespace=namespace, uid=uid, container=container)


def str_map(value: object) -> dict[str, str]:
    """Only the str→str items of a JSON object (labels, annotations); anything else → {}."""
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def json_object(value: object) -> Mapping[str, object]:
    """A JSON object as it is; anything else → {}."""
    return value if isinstance(value, dict) else {}


def str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _read_regular(path: str, limit: int) -> bytes | None:
    """Up to `limit` bytes of a regular file; None for anything else. A FIFO or a device
    planted in a runtime's state directory must not block or feed us forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def load_json(path: str) -> object | None:
    """The JSON document in `path`; None if missing, unreadable, too big or not JSON."""
    raw = _read_regular(path, MAX_JSON_BYTES + 1)
    if raw is None or len(raw) > MAX_JSON_BYTES:
        return None
    try:
        doc: object = json.loads(raw)
        return doc
    except ValueError:  # also UnicodeDecodeError
        return None


def load_json_object(path: str) -> dict[str, object] | None:
    """The JSON object in `path`; None if missing, unreadable, too big or not an object."""
    doc = load_json(path)
    return doc if isinstance(doc, dict) else None


def read_pid_file(path: str) -> int:
    """The pid in a runtime's pid file, or 0 when absent or not a positive number."""
    raw = _read_regular(path, 32)
    if raw is None:
        return 0
    text = raw.strip()
    return int(text) if text.isdigit() and int(text) > 0 else 0
