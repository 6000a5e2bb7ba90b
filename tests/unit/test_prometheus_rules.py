"""The shipped alert rules: `promtool check rules` and `promtool test rules` (a unit test for each
alert), and the PrometheusRule manifest carrying the same groups."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).parents[2]
PROM = REPO / "packaging" / "prometheus"
RULES = PROM / "sigtrace.rules.yml"
RULE_TESTS = PROM / "sigtrace.rules.test.yml"
MANIFEST = REPO / "packaging" / "kubernetes" / "prometheusrule.yaml"

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    promtool is None, reason="promtool absent (Debian's prometheus; scripts/setup installs it)"
)


def run_promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    assert promtool is not None
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def alerts(doc: dict) -> list[str]:
    return [r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r]


@needs_promtool
def test_promtool_check_rules() -> None:
    r = run_promtool("check", "rules", RULES.name)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_promtool_test_rules() -> None:
    r = run_promtool("test", "rules", RULE_TESTS.name)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


def test_every_alert_has_a_unit_test() -> None:
    tested = {
        t["alertname"]
        for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")  # a test that expects it to fire, not only silence
    }
    assert set(alerts(yaml.safe_load(RULES.read_text()))) == tested


@needs_promtool
def test_the_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """A wrong threshold in a copy of the rules makes `promtool test rules` fail."""
    text = RULES.read_text().replace("[15m])\n          ) > 0", "[15m])\n          ) > 1", 1)
    assert text != RULES.read_text()
    (tmp_path / RULES.name).write_text(text)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    r = run_promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert r.returncode != 0 and "SigtermIgnoredByPid1" in r.stdout + r.stderr


def test_the_prometheusrule_manifest_has_the_same_groups() -> None:
    doc = yaml.safe_load(MANIFEST.read_text())
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "PrometheusRule"
    assert doc["metadata"]["namespace"] == "sigtrace"
    assert doc["spec"] == yaml.safe_load(RULES.read_text()), f"{MANIFEST} differs from {RULES}"
