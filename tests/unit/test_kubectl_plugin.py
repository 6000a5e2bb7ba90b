"""packaging/kubectl-sigtrace refuses what it cannot look up, before asking any cluster: one
line on stderr, exit 2 (tests/k8s/test_daemonset.py runs it against the test node)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

PLUGIN = Path(__file__).parents[2] / "packaging" / "kubectl-sigtrace"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain", "web-1"], "web-1: give NAMESPACE/POD"),
        (["logs", 'shop/a"b'], 'shop/a"b: not a NAMESPACE/POD name'),
        (["explain", "Shop/web"], "Shop/web: not a NAMESPACE/POD name"),
        (["explain", "shop/"], "shop/: not a NAMESPACE/POD name"),
    ],
)
def test_bad_names_are_refused(args: list[str], message: str) -> None:
    # KUBECTL=false: were it asked, the answer would be a different error.
    r = subprocess.run(
        [str(PLUGIN), *args], capture_output=True, text=True, env={"KUBECTL": "false"}
    )
    assert (r.returncode, r.stderr, r.stdout) == (2, f"kubectl-sigtrace: {message}\n", "")


def test_usage() -> None:
    r = subprocess.run([str(PLUGIN), "explain"], capture_output=True, text=True)
    assert r.returncode == 2 and "kubectl sigtrace explain NS/POD" in r.stderr
