"""scripts/k8s-node's failure path: a component that cannot start is one clear error naming it
and its log, and the failed `up` takes down what it had started. A second node (its own
directories, cgroup root and ports) is started beside the test node, with its API port taken."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.k8s.cluster import Node

pytestmark = [pytest.mark.k8s, pytest.mark.root, pytest.mark.docker]

REPO = Path(__file__).resolve().parents[2]


def test_a_component_that_cannot_start_fails_up_cleanly(k8s_node: Node, tmp_path: Path) -> None:
    state = Path("/run/sigtrace-k8s-failtest")
    data = Path("/var/lib/sigtrace-k8s-failtest")
    env = {
        **os.environ,
        "K8S_STATE": str(state),
        "K8S_DATA": str(data),
        "K8S_LOG_DIR": str(tmp_path),
        "K8S_CGROUP_ROOT": "/sigtrace-k8s-failtest",
        "K8S_ETCD_PORT": "23890",
        "K8S_API_PORT": "26543",
        "K8S_KUBELET_PORT": "20350",
        "K8S_HEALTHZ_PORT": "20348",
        "K8S_UP_TIMEOUT": "30",
    }
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 26543))
        taken.listen()
        r = subprocess.run(
            [str(REPO / "scripts" / "k8s-node"), "up"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert r.returncode != 0
    assert "k8s-node: kube-apiserver exited during startup" in r.stderr, r.stderr
    assert "address already in use" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    # What it had started (containerd, etcd) is gone again, and so are its directories.
    assert "k8s-node: down" in r.stderr, r.stderr
    assert not state.exists() and not data.exists()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert str(state) not in ps.stdout
    assert not list(Path("/sys/fs/cgroup").glob("*/sigtrace-k8s-failtest"))
