"""Every field a shipped config or rule refers to exists: record fields in the sigtrace.v1 schema,
metric names and labels in what `sigtrace daemon --metrics` exports, enumerated values among
the schema's. A rename on either side fails here instead of silently emptying a dashboard.

What each file uses is listed in SHIPPED_USES below; the tests check the list is what the file
says (so it is the list the issue's closing note asks for) and that each entry exists.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sigtrace import schema
from sigtrace.metrics import Metrics

REPO = Path(__file__).parents[2]
LOGGING = REPO / "packaging" / "logging"
RULE_FILES = [
    REPO / "packaging" / "prometheus" / "sigtrace.rules.yml",
    REPO / "packaging" / "kubernetes" / "prometheusrule.yaml",
]

# Fields that are not sigtrace's: the CRI log line's (Fluent Bit's `cri` parser: log, stream),
# Vector's own event fields (message, stream, timestamp), the log store's labels (job) and
# the scrape's target labels (instance, job; `node` from the PodMonitor's relabeling).
CRI_AND_AGENT = {"log", "stream", "message", "timestamp", "job", "MESSAGE"}  # MESSAGE: journal's
SCRAPE_LABELS = {"instance", "job", "node"}


def flat_fields(spec: Any, prefix: str = "") -> set[str]:
    """Every field path of a record, flattened with `_` as LogQL's `| json` does (arrays are
    left whole by `| json`, so their insides are not listed)."""
    out: set[str] = set()
    fields: dict[str, Any] | None = None
    if isinstance(spec, schema._Opt):
        return flat_fields(spec.spec, prefix)
    if isinstance(spec, tuple) and spec[0] == "null":
        return flat_fields(spec[1], prefix)
    if isinstance(spec, dict) and "$ref" in spec:
        return flat_fields(schema.DEFS[spec["$ref"].rsplit("/", 1)[1]], prefix)
    if isinstance(spec, dict) and "$fields" in spec:
        fields = spec["$fields"]
    if fields is None:
        return {prefix} if prefix else set()
    for name, sub in fields.items():
        path = f"{prefix}_{name}" if prefix else name
        out.add(path)
        out |= flat_fields(sub, path)
    return out


def record_fields(kind: str | None = None) -> set[str]:
    kinds = [kind] if kind else list(schema.RECORDS)
    out: set[str] = set()
    for k in kinds:
        out |= flat_fields({"$fields": schema.fields(k)})
    return out


def exported_metrics() -> dict[str, set[str]]:
    """Sample name -> its label names, from a Metrics fed one record of every counted kind."""
    m = Metrics()
    c = {"id": "a" * 64, "name": "web", "runtime": "docker", "image": "x"}
    c["pod"] = {"name": "web-1", "namespace": "shop", "uid": "u", "container": "web"}
    t = {"pid": 2, "tid": 2, "ns_pid": 1, "comm": "sh", "pid1": True, "container": c}
    base = {"schema": schema.SCHEMA, "time": "2024-01-01T00:00:00Z"}
    for rec in (
        {"type": "start", "backend": "core", "version": "0"},
        {"type": "signal", "signal": "SIGTERM", "outcome": "ignored", "reason": "x", "target": t},
        {"type": "verdict", "verdict": "ignored_by_pid1", "container": c, "wasted_s": 2.0},
        {"type": "lost", "count": 1},
    ):
        m.observe({**base, **rec})
    out: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(m.exposition()[0].decode()):
        for s in fam.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return out


# --- what each shipped file refers to --------------------------------------------------------


def fluent_bit_uses() -> set[str]:
    text = (LOGGING / "fluent-bit.conf").read_text() + (LOGGING / "parsers.conf").read_text()
    used = set(re.findall(r"^\s*(?:Time_Key|Key_Name)\s+(\w+)", text, re.M))
    used |= set(re.findall(r"^\s*Regex\s+(\w+)\s", text, re.M))
    used |= set(re.findall(r"^\s*Rule\s+\$(\w+)\s", text, re.M))
    used |= set(re.findall(r"=\$(\w+)", text))  # Loki labels from record fields: node=$node
    used |= set(re.findall(r"^\s*Log_Key\s+(\w+)", text, re.M))
    return used


def vector_uses() -> set[str]:
    conf = tomllib.loads((LOGGING / "vector.toml").read_text())
    text = " ".join(t.get("source", "") for t in conf.get("transforms", {}).values())
    text = re.sub(r"#.*", "", text)  # comments
    used = set(re.findall(r"(?<![\w\"])\.(\w+)", text))
    raw = (LOGGING / "vector.toml").read_text()
    used |= set(re.findall(r"\{\{\s*\.?(\w+)\s*\}\}", raw))  # templated Loki labels
    return used


def logql_uses(expr: str, annotations: dict[str, str]) -> tuple[set[str], dict[str, str]]:
    """(record fields after `| json`, stream selector labels -> values)."""
    selector = dict(re.findall(r'(\w+)="([^"]*)"', expr.split("}", 1)[0]))
    after_json = expr.split("| json", 1)[1]
    used = set(re.findall(r"(\w+)\s*(?:=|!=|=~|!~)\s*\"", after_json))
    used |= {n.strip() for group in re.findall(r"by\s*\(([^)]*)\)", expr) for n in group.split(",")}
    used |= set(re.findall(r"\$labels\.(\w+)", " ".join(annotations.values())))
    return used, selector


def promql_uses(expr: str, annotations: dict[str, str]) -> tuple[set[str], set[str], dict]:
    """(metric names, label names, {label: [values matched]})."""
    metrics = set(re.findall(r"\b(sigtrace_\w+)", expr))
    matchers = re.findall(r'(\w+)\s*(=~|!=|=|!~)\s*"([^"]*)"', expr)
    labels = {name for name, _, _ in matchers}
    labels |= {
        n.strip() for group in re.findall(r"by\s*\(([^)]*)\)", expr) for n in group.split(",")
    }
    labels |= set(re.findall(r"\$labels\.(\w+)", " ".join(annotations.values())))
    values: dict[str, list[str]] = {}
    for name, op, value in matchers:
        values.setdefault(name, []).extend(value.split("|") if "~" in op else [value])
    return metrics, labels, values


def rules_of(path: Path) -> list[dict]:
    doc = yaml.safe_load(path.read_text())
    groups = doc["spec"]["groups"] if doc.get("kind") == "PrometheusRule" else doc["groups"]
    return [r for g in groups for r in g["rules"]]


# The closing note's list: each shipped config and the fields it uses (checked against the files).
SHIPPED_USES = {
    "packaging/logging/fluent-bit.conf + parsers.conf": {
        "time",
        "node",
        "type",
        "log",
        "stream",
        "MESSAGE",
    },
    "packaging/logging/vector.toml": {
        "time",
        "schema",
        "node",
        "type",
        "message",
        "stream",
        "timestamp",
    },
    "packaging/logging/loki-rules.yaml": {
        "type",
        "verdict",
        "node",
        "container_pod_namespace",
        "container_pod_name",
        "container_name",
    },
    "packaging/prometheus/sigtrace.rules.yml, packaging/kubernetes/prometheusrule.yaml": {
        "sigtrace_verdicts_total",
        "sigtrace_verdict_wasted_seconds_sum",
        "sigtrace_tracing_up",
        "sigtrace_lost_records_total",
        "verdict",
        "container",
        "pod_namespace",
        "pod",
        "instance",
    },
}


def test_the_list_of_uses_is_what_the_files_say() -> None:
    loki = set()
    for rule in rules_of(LOGGING / "loki-rules.yaml"):
        used, selector = logql_uses(rule["expr"], rule.get("annotations", {}))
        loki |= used | (set(selector) - CRI_AND_AGENT)
    prom: set[str] = set()
    for path in RULE_FILES:
        for rule in rules_of(path):
            metrics, labels, _ = promql_uses(rule["expr"], rule.get("annotations", {}))
            prom |= metrics | labels
    found = [fluent_bit_uses(), vector_uses(), loki, prom]
    assert dict(zip(SHIPPED_USES, found, strict=True)) == SHIPPED_USES


@pytest.mark.parametrize("uses", [fluent_bit_uses, vector_uses], ids=["fluent-bit", "vector"])
def test_agent_configs_use_only_record_fields(uses) -> None:
    unknown = uses() - record_fields() - CRI_AND_AGENT
    assert not unknown, f"not in any sigtrace.v1 record: {sorted(unknown)}"
    assert "time" in uses()  # the event time is the record's


def test_logql_rules_use_fields_of_the_records_they_select() -> None:
    for rule in rules_of(LOGGING / "loki-rules.yaml"):
        used, selector = logql_uses(rule["expr"], rule.get("annotations", {}))
        kind = selector.get("type")
        assert kind in schema.RECORDS, f"{rule['alert']}: stream type={kind!r} is no record type"
        unknown = used - record_fields(kind)
        assert not unknown, f"{rule['alert']}: not in a {kind} record: {sorted(unknown)}"
        for value in re.findall(r'verdict\s*=\s*"([^"]*)"', rule["expr"]):
            assert value in schema.VERDICTS[1]


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_prometheus_rules_use_exported_metrics_labels_and_values(path: Path) -> None:
    exported = exported_metrics()
    enums = {"verdict": set(schema.VERDICTS[1])}
    for rule in rules_of(path):
        metrics, labels, values = promql_uses(rule["expr"], rule.get("annotations", {}))
        assert metrics, rule["alert"]
        missing = metrics - set(exported)
        assert not missing, f"{rule['alert']}: sigtrace does not export {sorted(missing)}"
        have = set().union(*(exported[m] for m in metrics)) | SCRAPE_LABELS
        assert labels <= have, f"{rule['alert']}: labels {sorted(labels - have)} do not exist"
        for label, vals in values.items():
            if label in enums:
                assert set(vals) <= enums[label], f"{rule['alert']}: {label} {vals}"


def test_the_checks_catch_a_renamed_field() -> None:
    bad = 'sum by (node, target_container_pod_name) ({job="sigtrace", type="verdict"} | json)'
    used, _ = logql_uses(bad, {})
    assert used - record_fields("verdict") == {"target_container_pod_name"}
    metrics, labels, _ = promql_uses('sum by (pod) (sigtrace_verdict_total{verdikt="x"})', {})
    assert metrics - set(exported_metrics()) == {"sigtrace_verdict_total"}
    assert "verdikt" in labels
