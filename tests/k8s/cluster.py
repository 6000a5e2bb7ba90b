"""The test node (scripts/k8s-node) and its pods, as the Kubernetes tests drive them: `Node`
(kubectl with the node's environment), `Pods` (hostNetwork pods bound to the node) and the
`scripts/k8s-node` calls the fixtures in conftest.py bring it up and down with. A module of its
own so that tests import the types by name (every test directory has a conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
K8S_NODE = REPO / "scripts" / "k8s-node"
# A cold build is minutes of CPU (kubelet alone ~3 min on 2 idle cores); a warm `up` ~20 s.
UP_TIMEOUT_S = float(os.environ.get("SIGTRACE_K8S_UP_TIMEOUT", "2700"))
DOWN_TIMEOUT_S = 180.0
KUBECTL_TIMEOUT_S = 60.0
NAMESPACE = "shop"
# Images built by tests/images/build.py, imported into the node's containerd by `up`.
SHELLFORM_IMAGE = "docker.io/library/st-shellform:latest"


def node_script(cmd: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`scripts/k8s-node CMD`, in a session of its own: on timeout the whole build (go, its
    compilers) is killed, not just the script. (The node's daemons detach themselves.)"""
    proc = subprocess.Popen(
        [str(K8S_NODE), cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True)
class Node:
    name: str
    env: dict[str, str]  # KUBECONFIG, PATH with kubectl, SIGTRACE_CONTAINERD_STATE

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = KUBECTL_TIMEOUT_S
    ) -> str:
        r = subprocess.run(
            ["kubectl", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
            check=False,
        )
        if r.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} -> {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def get(self, kind: str, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        return json.loads(self.kubectl("-n", namespace, "get", kind, name, "-o", "json"))


# What kubelet's setupKernelTunables writes unless told not to (scripts/k8s-node patches it to
# warn): the node must leave them as it found them.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)


def host_sysctls() -> dict[str, str]:
    return {k: Path("/proc/sys", k).read_text().strip() for k in KUBELET_SYSCTLS}


def env_of(text: str) -> dict[str, str]:
    """`export K=V` lines from `scripts/k8s-node env`."""
    env = {}
    for line in text.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.replace("$PATH", os.environ.get("PATH", ""))
    return env


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    uid: str
    container: str


class Pods:
    """run(name, command, grace_s, prestop=argv, ...) -> Pod: a hostNetwork pod bound to the
    node (no scheduler needed), by default running once, its one container "web" from the
    st-shellform image, with an exec preStop hook or a liveness probe if given; waits until the
    container printed its first line.
    close() deletes what is left, without a grace period."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.names: list[str] = []

    def run(
        self,
        prefix: str,
        command: list[str],
        grace_s: int = 5,
        ready: str = "ready",
        prestop: list[str] | None = None,
        restart_policy: str = "Never",
        liveness: dict[str, Any] | None = None,
    ) -> Pod:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.names.append(name)
        container: dict[str, Any] = {
            "name": "web",
            "image": SHELLFORM_IMAGE,
            "imagePullPolicy": "Never",
            "command": command,
        }
        if prestop is not None:
            container["lifecycle"] = {"preStop": {"exec": {"command": prestop}}}
        if liveness is not None:
            container["livenessProbe"] = liveness
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "nodeName": self.node.name,
                "hostNetwork": True,  # the node has no CNI: hostNetwork pods need none
                "dnsPolicy": "Default",
                "enableServiceLinks": False,
                "restartPolicy": restart_policy,
                "terminationGracePeriodSeconds": grace_s,
                "containers": [container],
            },
        }
        self.node.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        self.wait_log(name, ready)
        uid = self.node.get("pod", name)["metadata"]["uid"]
        return Pod(name=name, namespace=NAMESPACE, uid=uid, container="web")

    def wait_log(self, name: str, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                last = self.node.kubectl("-n", NAMESPACE, "logs", name)
            except RuntimeError as e:  # not started yet
                last = str(e)
            if text in last:
                return
            time.sleep(0.5)
        status = self.node.get("pod", name).get("status", {})
        raise TimeoutError(
            f"pod {name}: no {text!r} in its log after {timeout} s: {last!r}; {status}"
        )

    def close(self) -> None:
        for name in self.names:
            self.node.kubectl(
                "-n", NAMESPACE, "delete", "pod", name, "--ignore-not-found",
                "--grace-period=0", "--force", "--wait=false",
            )  # fmt: skip
        self.names.clear()
