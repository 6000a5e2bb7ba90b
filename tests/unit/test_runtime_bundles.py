"""containerd and CRI-O readers on fake state directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sigtrace.containers.containerd import ContainerdBundles
from sigtrace.containers.crio import CrioStorage, PodmanStorage
from sigtrace.containers.records import PodRef
from sigtrace.errors import ContainerNotFound, RuntimeAbsent, RuntimeUnavailable

CID, SID = "c" * 64, "5" * 64
UID = "11111111-2222-4333-8444-555555555555"


def cri_bundle(root: Path, ns: str, cid: str, annotations: dict, pid: str) -> None:
    d = root / ns / cid
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"ociVersion": "1.0.2", "annotations": annotations}))
    (d / "init.pid").write_text(pid)


@pytest.fixture
def containerd_root(tmp_path: Path) -> Path:
    base = {
        "io.kubernetes.cri.sandbox-name": "web-7d9f",
        "io.kubernetes.cri.sandbox-namespace": "shop",
        "io.kubernetes.cri.sandbox-uid": UID,
    }
    cri_bundle(
        tmp_path,
        "k8s.io",
        CID,
        base
        | {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": "nginx",
            "io.kubernetes.cri.image-name": "docker.io/library/nginx:1.27",
        },
        "4242\n",
    )
    cri_bundle(tmp_path, "k8s.io", SID, base | {"io.kubernetes.cri.container-type": "sandbox"}, "")
    cri_bundle(tmp_path, "moby", "d" * 64, {}, "77")
    (tmp_path / "k8s.io" / "broken").mkdir()
    return tmp_path


def test_containerd_container(containerd_root: Path) -> None:
    c = ContainerdBundles(str(containerd_root)).inspect(CID)
    assert (c.name, c.runtime, c.image, c.pid, c.sandbox) == (
        "nginx",
        "containerd",
        "docker.io/library/nginx:1.27",
        4242,
        False,
    )
    assert c.pod == PodRef("web-7d9f", "shop", UID, "nginx")


def test_containerd_sandbox(containerd_root: Path) -> None:
    s = ContainerdBundles(str(containerd_root)).inspect(SID)
    assert (s.name, s.pid, s.sandbox, s.pod) == (
        "web-7d9f",
        0,
        True,
        PodRef("web-7d9f", "shop", UID),
    )


def test_containerd_list_and_namespaces(containerd_root: Path) -> None:
    assert len(ContainerdBundles(str(containerd_root)).list_containers()) == 3
    only = ContainerdBundles(str(containerd_root), namespaces=("moby",)).list_containers()
    assert [(c.id, c.name, c.pid) for c in only] == [("d" * 64, None, 77)]


def test_containerd_errors(containerd_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ContainerNotFound):
        ContainerdBundles(str(containerd_root)).inspect("../moby/" + "d" * 64)
    with pytest.raises(RuntimeAbsent) as err:  # no state dir: no containerd (or no task yet)
        ContainerdBundles(str(tmp_path / "nope")).list_containers()
    assert err.value.message == f"containerd: no {tmp_path}/nope"
    (tmp_path / "file").write_text("")  # there, but not a directory: a failure, not absence
    with pytest.raises(RuntimeUnavailable) as err:
        ContainerdBundles(str(tmp_path / "file")).list_containers()
    assert not isinstance(err.value, RuntimeAbsent)
    assert "\n" not in err.value.message


def test_crio(tmp_path: Path) -> None:
    ud = tmp_path / CID / "userdata"
    ud.mkdir(parents=True)
    ann = {
        "io.kubernetes.pod.name": "web-7d9f",
        "io.kubernetes.pod.namespace": "shop",
        "io.kubernetes.pod.uid": UID,
        "io.kubernetes.container.name": "nginx",
        "io.kubernetes.cri-o.ContainerType": "container",
        "io.kubernetes.cri-o.ImageName": "docker.io/library/nginx:1.27",
    }
    (ud / "config.json").write_text(json.dumps({"annotations": ann}))
    (ud / "pidfile").write_text("31337")
    c = CrioStorage(str(tmp_path)).inspect(CID)
    assert (c.name, c.runtime, c.pid, c.pod) == (
        "nginx",
        "cri-o",
        31337,
        PodRef("web-7d9f", "shop", UID, "nginx"),
    )
    assert [x.id for x in CrioStorage(str(tmp_path)).list_containers()] == [CID]
    with pytest.raises(ContainerNotFound):
        CrioStorage(str(tmp_path)).inspect("5" * 64)
    with pytest.raises(RuntimeAbsent):
        CrioStorage(str(tmp_path / "nope")).inspect(CID)
    with pytest.raises(RuntimeAbsent) as err:
        CrioStorage(str(tmp_path / "nope")).list_containers()
    assert err.value.message == f"cri-o: no {tmp_path}/nope"


def _storage_entry(root: Path, cid: str, annotations: dict | None, pid: str | None) -> None:
    ud = root / cid / "userdata"
    ud.mkdir(parents=True, exist_ok=True)
    if annotations is not None:
        (ud / "config.json").write_text(json.dumps({"annotations": annotations}))
    if pid is not None:
        (ud / "pidfile").write_text(pid)


def test_podman(tmp_path: Path) -> None:
    """As rootful Podman 4 lays it out (tests/docker/test_podman.py runs the real one): config
    under the graph root, pidfile under the run root, names in the storage's containers.json."""
    graph, run = tmp_path / "lib", tmp_path / "run"
    libpod = {"io.container.manager": "libpod", "io.kubernetes.cri-o.TTY": "false"}
    _storage_entry(graph, CID, libpod | {"org.opencontainers.image.stopSignal": "10"}, None)
    _storage_entry(run, CID, None, "4242\n")
    _storage_entry(graph, SID, libpod, None)  # not in the index: no name, still traced
    _storage_entry(run, "d" * 64, {"io.kubernetes.cri-o.ContainerType": "container"}, "7")
    meta = {"image-name": "localhost/st-busybox:latest", "name": "web"}
    index = [
        {"id": CID, "names": ["web"], "metadata": json.dumps(meta)},
        {"id": "e" * 64, "names": "not a list", "metadata": "{not json"},
        "junk",
    ]
    (graph / "containers.json").write_text(json.dumps(index))
    podman = PodmanStorage(str(graph), str(run))
    c = podman.inspect(CID)
    assert (c.name, c.runtime, c.image, c.pid, c.stop_signal, c.pod) == (
        "web",
        "podman",
        "localhost/st-busybox:latest",
        4242,
        "10",
        None,
    )
    assert [(x.id, x.name) for x in podman.list_containers()] == [(SID, None), (CID, "web")]
    # The run root is CRI-O's directory too: its reader skips Podman's, and Podman's CRI-O's.
    crio = CrioStorage(str(run))
    assert [(x.id, x.runtime) for x in crio.list_containers()] == [("d" * 64, "cri-o")]
    _storage_entry(run, CID, libpod, None)
    with pytest.raises(ContainerNotFound):
        crio.inspect(CID)
    with pytest.raises(ContainerNotFound):
        PodmanStorage(str(run), str(run)).inspect("d" * 64)
    with pytest.raises(RuntimeAbsent) as err:
        PodmanStorage(str(tmp_path / "nope"), str(run)).list_containers()
    assert err.value.message == f"podman: no {tmp_path}/nope"
