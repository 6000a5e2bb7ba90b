"""packaging/kubernetes/: every manifest against the Kubernetes API schema (offline, with the
schemas kubernetes-validate ships), the PodMonitor against its fields, and the DaemonSet's
security-relevant settings, including a reason written next to every added capability."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "packaging" / "kubernetes"
MAIN = K8S / "sigtrace.yaml"
PODMONITOR = K8S / "podmonitor.yaml"
# The oldest schema kubernetes-validate ships, and its newest.
VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
CAPS = {"BPF", "PERFMON"}
HOST_PATHS = {
    "/sys/kernel/btf",
    "/sys/kernel/tracing",
    "/sys/kernel/debug",
    "/sys/fs/cgroup",
    "/proc",
    "/run/containerd",
    "/var/run/docker.sock",
    "/run/crio",
    "/var/lib/docker/containers",
}


def load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def daemonset() -> dict:
    (ds,) = [d for d in load(MAIN) if d["kind"] == "DaemonSet"]
    return ds


def container(ds: dict) -> dict:
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    return c


def walk(node: Any):
    """Every (key, value) pair in nested dicts and lists."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def test_the_manifest_holds_namespace_serviceaccount_daemonset() -> None:
    kinds = [(d["apiVersion"], d["kind"]) for d in load(MAIN)]
    assert kinds == [("v1", "Namespace"), ("v1", "ServiceAccount"), ("apps/v1", "DaemonSet")]
    ns = load(MAIN)[0]["metadata"]["name"]
    assert all(d["metadata"].get("namespace") == ns for d in load(MAIN)[1:])


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("index", range(3))
def test_validates_against_the_kubernetes_schema(version: str, index: int) -> None:
    doc = load(MAIN)[index]
    # strict: unknown fields (a misspelt key Kubernetes would silently drop) are errors.
    kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "template", "spec", "hostPID"), "yes"),
        (("spec", "template", "spec", "containers", 0, "securityContext", "readOnlyRootFs"), True),
        (("spec", "template", "spec", "tolerations", 0, "operator"), 3),
    ],
)
def test_the_validator_catches_mistakes(path: tuple, value: object) -> None:
    doc = copy.deepcopy(daemonset())
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)


def test_not_privileged_and_host_pid() -> None:
    ds = daemonset()
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    assert not any(k == "privileged" and v is True for k, v in walk(load(MAIN)))
    sc = container(ds)["securityContext"]
    assert sc["privileged"] is False
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == CAPS


def test_every_host_path_is_mounted_read_only() -> None:
    ds = daemonset()
    pod = ds["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = container(ds)["volumeMounts"]
    assert {v["hostPath"]["path"] for v in volumes.values()} >= HOST_PATHS
    assert {m["name"] for m in mounts} == set(volumes)
    for m in mounts:
        assert m.get("readOnly") is True, m
        assert "hostPath" in volumes[m["name"]], m
    proc = next(m for m in mounts if volumes[m["name"]]["hostPath"]["path"] == "/proc")
    env = {e["name"]: e for e in container(ds)["env"]}
    assert env["SIGTRACE_PROC_ROOT"]["value"] == proc["mountPath"] == "/host/proc"
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


def test_runs_everywhere_stops_quickly_and_is_scraped() -> None:
    ds = daemonset()
    tmpl = ds["spec"]["template"]
    pod = tmpl["spec"]
    c = container(ds)
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["terminationGracePeriodSeconds"] == 10
    assert c["args"] == ["--metrics", "0.0.0.0:9090", "--log-format", "json"]
    (port,) = c["ports"]
    assert (port["name"], port["containerPort"]) == ("metrics", 9090)
    probe = c["livenessProbe"]["httpGet"]
    assert (probe["path"], probe["port"]) == ("/healthz", "metrics")
    ann = tmpl["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/port"] == str(port["containerPort"])
    assert ann["prometheus.io/path"] == "/metrics"
    assert c["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }
    assert ds["spec"]["selector"]["matchLabels"].items() <= tmpl["metadata"]["labels"].items()


def test_every_added_capability_has_a_reason_above_it() -> None:
    lines = MAIN.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "add:")
    indent = len(lines[start]) - len(lines[start].lstrip())
    items: list[tuple[str, list[str]]] = []
    comments: list[str] = []
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if stripped and len(line) - len(line.lstrip()) <= indent:
            break  # the end of the add: block
        if stripped.startswith("#"):
            comments.append(stripped.lstrip("# "))
        elif stripped.startswith("- "):
            items.append((stripped[2:].strip(), comments))
            comments = []
    assert {name for name, _ in items} == CAPS
    for name, why in items:
        assert why and why[0].startswith(f"{name}: "), f"{name}: no '# {name}: why' above it"
        assert len(" ".join(why).split()) >= 6, f"{name}: the reason is too short: {why}"
    # What is not added says why not.
    rest = " ".join(comments)
    assert "SYS_ADMIN" in rest and "5.8" in rest
    assert "SYS_RESOURCE" in rest and "memory cgroup" in rest


# --- PodMonitor: a CRD, so no Kubernetes schema; its fields are checked against the subset of
# prometheus-operator's monitoring.coreos.com/v1 schema this file uses (typos are errors).

_RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sourceLabels": {"type": "array", "items": {"type": "string"}},
        "separator": {"type": "string"},
        "targetLabel": {"type": "string"},
        "regex": {"type": "string"},
        "modulus": {"type": "integer"},
        "replacement": {"type": "string"},
        "action": {
            "enum": [
                "replace",
                "keep",
                "drop",
                "hashmod",
                "labelmap",
                "labeldrop",
                "labelkeep",
                "lowercase",
                "uppercase",
                "keepequal",
                "dropequal",
            ]
        },
    },
}
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
             r"(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}  # fmt: skip
PODMONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "podMetricsEndpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                        "matchExpressions": {"type": "array"},
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array", "items": _RELABEL},
                            "metricRelabelings": {"type": "array", "items": _RELABEL},
                        },
                    },
                },
                "sampleLimit": {"type": "integer"},
            },
        },
    },
}


def test_podmonitor_fields() -> None:
    (pm,) = load(PODMONITOR)
    jsonschema.validate(pm, PODMONITOR_SCHEMA)
    broken = copy.deepcopy(pm)
    broken["spec"]["podMetricEndpoints"] = broken["spec"].pop("podMetricsEndpoints")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, PODMONITOR_SCHEMA)


def test_podmonitor_selects_the_daemonsets_metrics_port() -> None:
    (pm,) = load(PODMONITOR)
    ds = daemonset()
    tmpl = ds["spec"]["template"]
    assert pm["metadata"]["namespace"] == ds["metadata"]["namespace"]
    assert pm["spec"]["namespaceSelector"]["matchNames"] == [ds["metadata"]["namespace"]]
    assert pm["spec"]["selector"]["matchLabels"].items() <= tmpl["metadata"]["labels"].items()
    ports = {p["name"] for p in container(ds)["ports"]}
    for ep in pm["spec"]["podMetricsEndpoints"]:
        assert ep["port"] in ports
        assert ep["path"] == tmpl["metadata"]["annotations"]["prometheus.io/path"]
        interval = int(re.fullmatch(r"(\d+)s", ep["interval"]).group(1))  # type: ignore[union-attr]
        timeout = int(re.fullmatch(r"(\d+)s", ep["scrapeTimeout"]).group(1))  # type: ignore[union-attr]
        assert timeout <= interval  # Prometheus refuses a config otherwise


# --- events-rbac.yaml: --k8s-events' permissions, nothing more -----------------------------

EVENTS_RBAC = K8S / "events-rbac.yaml"


@pytest.mark.parametrize("version", VERSIONS)
def test_events_rbac_validates(version: str) -> None:
    for doc in load(EVENTS_RBAC):
        kubernetes_validate.validate(doc, version, strict=True)


def test_events_rbac_is_create_events_and_get_pods_for_the_daemonsets_account() -> None:
    role, binding = load(EVENTS_RBAC)
    assert (role["kind"], binding["kind"]) == ("ClusterRole", "ClusterRoleBinding")
    grants = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert grants == {("", "events", "create"), ("", "pods", "get")}
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    (account,) = [d for d in load(MAIN) if d["kind"] == "ServiceAccount"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
    assert daemonset()["spec"]["template"]["spec"]["serviceAccountName"] == "sigtrace"


def test_events_rbac_says_how_to_turn_it_on() -> None:
    text = EVENTS_RBAC.read_text()
    assert "--k8s-events" in text and "automountServiceAccountToken" in text
    # the patch's paths exist in the DaemonSet as shipped
    spec = daemonset()["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert "--k8s-events" not in container(daemonset())["args"]  # opt-in
