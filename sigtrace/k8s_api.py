"""The few Kubernetes API calls the daemon makes (create an Event, get a pod), over the stdlib's
http.client with a bearer token: no client library for two requests.

Where the API is: `--k8s-api URL --k8s-token-file F [--k8s-ca-file F]`, else in a pod the
in-cluster config every kubelet mounts (KUBERNETES_SERVICE_HOST/PORT, the service account's
token and CA under /var/run/secrets/kubernetes.io/serviceaccount). The token file is read at
each request: bound service account tokens are rotated in place."""

from __future__ import annotations

import http.client
import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict
from urllib.parse import quote, urlsplit

from sigtrace.errors import UsageError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TIMEOUT_S = 5.0


class ObjectReference(TypedDict):
    apiVersion: str
    kind: str
    namespace: str
    name: str
    uid: NotRequired[str]
    fieldPath: NotRequired[str]


class EventMeta(TypedDict):
    generateName: str
    namespace: str


class EventSource(TypedDict):
    component: str
    host: NotRequired[str]


class Event(TypedDict):
    """The core/v1 Event fields sigtrace writes."""

    apiVersion: str
    kind: str
    metadata: EventMeta
    involvedObject: ObjectReference
    reason: str
    message: str
    type: str
    source: EventSource
    reportingComponent: str
    reportingInstance: str
    firstTimestamp: str
    lastTimestamp: str
    count: int


class ApiError(Exception):
    """A request that failed: not reached, refused, or answered with an error status."""


@dataclass(frozen=True)
class ApiTarget:
    host: str
    port: int
    token_file: str
    ca_file: str | None = None  # None: the system's CAs

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


def target(
    url: str | None,
    token_file: str | None,
    ca_file: str | None,
    env: dict[str, str] | None = None,
    sa_dir: Path = SERVICE_ACCOUNT,
) -> ApiTarget:
    """The API to talk to: the options given, else the in-cluster config; UsageError when
    neither is complete (said at start, not at the first verdict)."""
    env = dict(os.environ) if env is None else env
    if url is None:
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise UsageError(
                "--k8s-events: not in a pod (no KUBERNETES_SERVICE_HOST/PORT): give --k8s-api"
            )
        url = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        token_file = token_file or str(sa_dir / "token")
        ca_file = ca_file or str(sa_dir / "ca.crt")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise UsageError(f"--k8s-api: {url!r} is not an https://HOST[:PORT] URL")
    if not token_file:
        raise UsageError("--k8s-api needs --k8s-token-file")
    for name, path in (("token", token_file), ("CA", ca_file)):
        if path and not os.access(path, os.R_OK):
            raise UsageError(f"--k8s-events: cannot read the {name} file {path}")
    try:
        port_ = parts.port or 443
    except ValueError as e:
        raise UsageError(f"--k8s-api: {url!r}: {e}") from None
    return ApiTarget(parts.hostname, port_, token_file, ca_file)


class Api:
    def __init__(self, t: ApiTarget, timeout_s: float = TIMEOUT_S) -> None:
        self.target = t
        self.timeout_s = timeout_s
        self.ctx = t.context()

    def request(
        self, method: str, path: str, body: Mapping[str, object] | None = None
    ) -> dict[str, Any]:
        """One request; its JSON answer, or ApiError."""
        try:
            token = Path(self.target.token_file).read_text().strip()
        except OSError as e:
            raise ApiError(f"token {self.target.token_file}: {e.strerror or e}") from None
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPSConnection(
            self.target.host, self.target.port, timeout=self.timeout_s, context=self.ctx
        )
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read(1 << 20)
        except (OSError, http.client.HTTPException) as e:
            raise ApiError(f"{method} {path}: {e}") from None
        finally:
            conn.close()
        if resp.status >= 300:
            raise ApiError(f"{method} {path}: HTTP {resp.status} {_message(raw)}")
        try:
            answer = json.loads(raw)
        except ValueError:
            raise ApiError(f"{method} {path}: not JSON") from None
        return answer if isinstance(answer, dict) else {}

    def create_event(self, event: Event) -> None:
        ns = quote(event["metadata"]["namespace"], safe="")
        self.request("POST", f"/api/v1/namespaces/{ns}/events", event)

    def post_event(self, event: Event) -> None:
        """Create the Event; an involved pod without a uid (its runtime did not say) gets the
        API's, when the pod can be read."""
        involved = event["involvedObject"]
        if "uid" not in involved:
            try:
                uid = self.pod_uid(involved["namespace"], involved["name"])
            except ApiError:
                uid = None
            if uid:
                involved["uid"] = uid
        self.create_event(event)

    def pod_uid(self, namespace: str, name: str) -> str | None:
        pod = self.request(
            "GET", f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}"
        )
        uid = (pod.get("metadata") or {}).get("uid")
        return uid if isinstance(uid, str) else None


def _message(raw: bytes) -> str:
    """The API's Status message (its own text, cut short), else nothing."""
    try:
        status = json.loads(raw)
    except ValueError:
        return ""
    msg = status.get("message") if isinstance(status, dict) else None
    return f"({str(msg)[:200]})" if msg else ""
