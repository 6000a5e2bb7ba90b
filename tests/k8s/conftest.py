"""Fixtures for tests against a real one-node Kubernetes (scripts/k8s-node): kubelet 1.20,
kube-apiserver, etcd and a containerd of the node's own, on loopback.

The first test brings the node up (building kubelet and friends on the machine's first
run), the package's last one takes it down, unless it was already up (a developer's
`scripts/k8s-node up`).
Skips only when not root; as root, a node that cannot come up is an error naming why.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.k8s.cluster import (
    DOWN_TIMEOUT_S,
    NAMESPACE,
    UP_TIMEOUT_S,
    Node,
    Pods,
    env_of,
    host_sysctls,
    node_script,
    tail,
)


# Package scope: the node is down again before the tests after tests/k8s run (they trace the
# whole host, and the kubelet's housekeeping would be noise there).
@pytest.fixture(scope="package")
def k8s_node() -> Iterator[Node]:
    if os.geteuid() != 0:
        pytest.skip("Kubernetes tests need root")
    before = host_sysctls()
    was_up = node_script("status", 30).returncode == 0
    if not was_up:
        try:
            r = node_script("up", UP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            node_script("down", DOWN_TIMEOUT_S)
            pytest.fail(f"scripts/k8s-node up took over {UP_TIMEOUT_S:.0f} s", pytrace=False)
        if r.returncode != 0:
            node_script("down", DOWN_TIMEOUT_S)
            pytest.fail(f"scripts/k8s-node up failed:\n{tail(r.stderr)}", pytrace=False)
    env = env_of(node_script("env", 30).stdout)
    node = Node(name=env["K8S_NODE"], env=env)
    try:
        node.kubectl("create", "namespace", NAMESPACE)
    except RuntimeError as e:
        if "AlreadyExists" not in str(e):
            raise
    try:
        yield node
    finally:
        if not was_up:
            r = node_script("down", DOWN_TIMEOUT_S)
            assert r.returncode == 0, f"scripts/k8s-node down failed:\n{tail(r.stderr)}"
        assert host_sysctls() == before, "the test node changed the host's sysctls"


@pytest.fixture
def pods(k8s_node: Node) -> Iterator[Pods]:
    p = Pods(k8s_node)
    try:
        yield p
    finally:
        p.close()
