"""Docker Engine: its API over the unix socket, or its on-disk state when the daemon is silent.

Stdlib only (http.client over AF_UNIX). Every request has a short timeout: enrichment must never
stall tracing. When the socket is absent or does not answer, the containers' config.v2.json
under <data_root>/containers is read instead (it holds name, image, labels, stop signal, pid).
Failures are mapped here, once, to RuntimeUnavailable / ContainerNotFound.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import urllib.parse
from collections.abc import Mapping
from typing import Any

from sigtrace.containers.records import (
    MAX_JSON_BYTES,
    RuntimeContainer,
    json_object,
    load_json_object,
    pod_from_labels,
    str_map,
    str_or_none,
)
from sigtrace.errors import ContainerNotFound, RuntimeAbsent, RuntimeUnavailable
from sigtrace.escape import printable

DEFAULT_SOCKET = "/var/run/docker.sock"
DEFAULT_DATA_ROOT = "/var/lib/docker"
_FULL_ID = re.compile(r"^[0-9a-f]{64}$")
# What Docker accepts as a container name or id; anything else never reaches a URL or a path.
_REF = re.compile(r"^/?[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


class _NoAnswer(Exception):
    """The daemon is absent or did not answer properly: fall back to the files."""


@functools.cache
def _http() -> tuple[Any, type[Exception]]:
    """(connection class, http.client's error), imported at the first request: http.client
    and the ssl it loads cost a tracer that meets no container ~5 ms and ~2 MB at start."""
    import http.client

    class UnixHTTPConnection(http.client.HTTPConnection):
        def __init__(self, socket_path: str, timeout: float) -> None:
            super().__init__("localhost", timeout=timeout)
            self.socket_path = socket_path

        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.socket_path)
            except OSError:
                sock.close()
                raise
            self.sock = sock

    return UnixHTTPConnection, http.client.HTTPException


def container_from_inspect(doc: Mapping[str, object]) -> RuntimeContainer:
    """From `GET /containers/<id>/json` or an on-disk config.v2.json (same shape, `ID` on disk)."""
    config = json_object(doc.get("Config"))
    state = json_object(doc.get("State"))
    labels = str_map(config.get("Labels"))
    pid = state.get("Pid")
    running = state.get("Running", True) is True
    return RuntimeContainer(
        id=str_or_none(doc.get("Id")) or str_or_none(doc.get("ID")) or "",
        name=_name(doc.get("Name")),
        runtime="docker",
        image=str_or_none(config.get("Image")),
        pid=pid if type(pid) is int and pid > 0 and running else 0,
        labels=labels,
        stop_signal=str_or_none(config.get("StopSignal")),
        pod=pod_from_labels(labels),
        sandbox=labels.get("io.kubernetes.docker.type") == "podsandbox",
    )


def container_from_summary(doc: Mapping[str, object]) -> RuntimeContainer:
    """From one entry of `GET /containers/json` (no pid, no stop signal there)."""
    names = doc.get("Names")
    labels = str_map(doc.get("Labels"))
    return RuntimeContainer(
        id=str_or_none(doc.get("Id")) or "",
        name=_name(names[0]) if isinstance(names, list) and names else None,
        runtime="docker",
        image=str_or_none(doc.get("Image")),
        labels=labels,
        pod=pod_from_labels(labels),
        sandbox=labels.get("io.kubernetes.docker.type") == "podsandbox",
    )


def _name(value: object) -> str | None:
    name = str_or_none(value)  # the API and the files write "/name"
    return (name.removeprefix("/") or None) if name else None


class DockerClient:
    runtime = "docker"

    def __init__(
        self,
        socket_path: str = DEFAULT_SOCKET,
        data_root: str = DEFAULT_DATA_ROOT,
        timeout: float = 1.0,
    ) -> None:
        self.socket_path = socket_path
        self.data_root = data_root
        self.timeout = min(timeout, 1.0)

    def list_containers(self) -> list[RuntimeContainer]:
        try:
            docs = self._get("/containers/json?all=1")
        except _NoAnswer as e:
            return self._disk_list(str(e))
        if not isinstance(docs, list):
            return self._disk_list("docker API returned no container list")
        return [container_from_summary(d) for d in docs if isinstance(d, dict) and d.get("Id")]

    def inspect(self, ref: str) -> RuntimeContainer:
        """By id, unique id prefix or name (as Docker matches them)."""
        if not _REF.match(ref):
            raise ContainerNotFound(f"no docker container {printable(ref)!r}")
        try:
            doc = self._get(f"/containers/{urllib.parse.quote(ref.lstrip('/'))}/json")
        except _NoAnswer as e:
            return self._disk_inspect(ref.lstrip("/"), str(e))
        if doc is None:
            raise ContainerNotFound(f"no docker container {ref!r}")
        if not isinstance(doc, dict):
            return self._disk_inspect(ref.lstrip("/"), "docker API returned no container")
        return container_from_inspect(doc)

    def _get(self, path: str) -> object:
        """The decoded JSON body; None on 404. Raises _NoAnswer for everything else."""
        connection, http_error = _http()
        conn = connection(self.socket_path, self.timeout)
        try:
            conn.request("GET", path, headers={"Accept": "application/json"})
            resp = conn.getresponse()
            body = resp.read(MAX_JSON_BYTES + 1)
        except (OSError, http_error) as e:  # socket.timeout is an OSError
            raise _NoAnswer(f"docker socket {self.socket_path}: {_reason(e)}") from None
        finally:
            conn.close()
        if resp.status == 404:
            return None
        if resp.status != 200 or len(body) > MAX_JSON_BYTES:
            raise _NoAnswer(f"docker API answered HTTP {resp.status} for {path}")
        try:
            return json.loads(body)
        except ValueError:
            raise _NoAnswer(f"docker API sent invalid JSON for {path}") from None

    # On-disk fallback: <data_root>/containers/<id>/config.v2.json

    def _containers_dir(self, why: str) -> str:
        path = os.path.join(self.data_root, "containers")
        if not os.path.lexists(path) and not os.path.lexists(self.socket_path):
            # Neither a daemon nor its state: Docker is not installed (or never ran) here.
            raise RuntimeAbsent(f"docker: no {self.socket_path} and no {path}")
        if not os.access(path, os.R_OK | os.X_OK):
            raise RuntimeUnavailable(f"{why}; and {path} is not readable")
        return path

    def _disk_list(self, why: str) -> list[RuntimeContainer]:
        base = self._containers_dir(why)
        try:
            ids = sorted(n for n in os.listdir(base) if _FULL_ID.match(n))
        except OSError as e:
            raise RuntimeUnavailable(f"{why}; and {base}: {_reason(e)}") from None
        out = []
        for cid in ids:
            doc = load_json_object(os.path.join(base, cid, "config.v2.json"))
            if doc is not None:
                out.append(container_from_inspect(doc))
        return out

    def _disk_inspect(self, ref: str, why: str) -> RuntimeContainer:
        base = self._containers_dir(why)
        if _FULL_ID.match(ref):
            doc = load_json_object(os.path.join(base, ref, "config.v2.json"))
            if doc is not None:
                return container_from_inspect(doc)
        matches = [c for c in self._disk_list(why) if c.name == ref or c.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        raise ContainerNotFound(
            f"no docker container {ref!r} in {base}" if not matches else f"{ref!r} is ambiguous"
        )


def _reason(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "no answer (timed out)"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return type(e).__name__
