"""A pod sandbox's (pause) end tells no story of its own: the kubelet SIGKILLs it with no stop
signal after the pod's containers stopped. Bundles as kubelet 1.20 + containerd 1.6 wrote them."""

from __future__ import annotations

import json
from pathlib import Path

from sigtrace.containers.cache import ContainerCache
from sigtrace.containers.containerd import container_from_bundle
from sigtrace.containers.records import RuntimeContainer
from sigtrace.errors import ContainerNotFound
from sigtrace.runner import is_pod_sandbox_story

ANNOTATIONS = json.loads(
    (Path(__file__).parents[1] / "data" / "k8s" / "bundle-annotations.json").read_text()
)
SANDBOX_ID = ANNOTATIONS["container"]["io.kubernetes.cri.sandbox-id"]
APP_ID = "9f" * 32


class Bundles:
    runtime = "containerd"

    def __init__(self) -> None:
        self.containers = {
            SANDBOX_ID: container_from_bundle(SANDBOX_ID, {"annotations": ANNOTATIONS["sandbox"]}),
            APP_ID: container_from_bundle(APP_ID, {"annotations": ANNOTATIONS["container"]}),
        }

    def inspect(self, cid: str) -> RuntimeContainer:
        if cid not in self.containers:
            raise ContainerNotFound(cid)
        return self.containers[cid]

    def list_containers(self) -> list[RuntimeContainer]:
        return list(self.containers.values())


def verdict(cid: str | None) -> dict:
    return {"type": "verdict", "verdict": "killed_without_stop_signal", "container": {"id": cid}}


def test_the_sandbox_story_is_dropped_the_apps_kept() -> None:
    cache = ContainerCache([Bundles()])
    assert is_pod_sandbox_story(cache, verdict(SANDBOX_ID))
    assert not is_pod_sandbox_story(cache, verdict(APP_ID))


def test_a_container_sigtrace_cannot_name_keeps_its_story() -> None:
    cache = ContainerCache([Bundles()])
    assert not is_pod_sandbox_story(cache, verdict("ab" * 32))
    assert not is_pod_sandbox_story(cache, verdict(None))
