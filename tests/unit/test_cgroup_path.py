"""parse_proc_cgroup / container_from_path against recorded /proc/<pid>/cgroup files.

tests/data/cgroup: hybrid-v1-docker, host-process-hybrid and inside-cgroupns were captured on
the project's machine (Docker 20.10, cgroupfs driver, cgroup v1 + v2 at /sys/fs/cgroup/unified;
inside-cgroupns from `docker run --cgroupns=private`); the others are written from the layouts
the runtimes document, one file per shape.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sigtrace.containers.cgroup_path import (
    CgroupInfo,
    ContainerRef,
    container_from_path,
    parse_proc_cgroup,
)

DATA = Path(__file__).parent.parent / "data" / "cgroup"

HYBRID_ID = "14c7cfcd1d13c7c66373c8f1bc5e9634c9a7aac17331f8d000ee21164f589d4e"
UID_SYSTEMD = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
UID_BESTEFFORT = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"

EXPECTED: dict[str, ContainerRef | None] = {
    "docker-cgroupfs-v1": ContainerRef(
        "3f9a1c0b7d2e4f6a8b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6", "docker"
    ),
    "docker-systemd-v2": ContainerRef(
        "a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff00", "docker"
    ),
    "hybrid-v1-docker": ContainerRef(HYBRID_ID, "docker"),
    "k8s-containerd-systemd-v2": ContainerRef(
        "5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f",
        "containerd",
        pod_uid=UID_SYSTEMD,
        qos="burstable",
    ),
    "k8s-containerd-cgroupfs-v1-burstable": ContainerRef(
        "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee01",
        "unknown",  # a bare id under pod<uid>: any CRI runtime lays it out so
        pod_uid="11111111-2222-4333-8444-555555555555",
        qos="burstable",
    ),
    "k8s-containerd-cgroupfs-v1-besteffort": ContainerRef(
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "unknown",
        pod_uid=UID_BESTEFFORT,
        qos="besteffort",
    ),
    "k8s-containerd-cgroupfs-v1-guaranteed": ContainerRef(
        "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
        "unknown",
        pod_uid="d41d8cd9-8f00-4b20-9e98-00998ecf8427",
        qos="guaranteed",
    ),
    "crio-systemd": ContainerRef(
        "9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa998877665544",
        "cri-o",
        pod_uid=UID_BESTEFFORT,
        qos="besteffort",
    ),
    "crio-conmon": None,
    "podman-v2": ContainerRef(
        "4b3a29180716f5e4d3c2b1a0f9e8d7c6b5a4938271605f4e3d2c1b0a99887766", "podman"
    ),
    "podman-nested": ContainerRef(
        "77665544332211000011223344556677889900aabbccddeeff0011223344ab12", "podman"
    ),
    "podman-conmon": None,
    "host-process": None,
    "host-process-hybrid": None,
    "host-service": None,
    "inside-cgroupns": None,
}


def load(name: str) -> CgroupInfo:
    return parse_proc_cgroup((DATA / f"{name}.txt").read_text())


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(p.stem for p in DATA.glob("*.txt")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_container_of_fixture(name: str) -> None:
    assert load(name).container == EXPECTED[name]


def test_hybrid_capture_keeps_every_hierarchy() -> None:
    info = load("hybrid-v1-docker")
    assert info.v2_path == f"/docker/{HYBRID_ID}"
    assert sorted(info.v1_paths) == [
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "memory",
        "name=systemd",
        "pids",
    ]
    assert info.v1_paths["pids"] == f"/docker/{HYBRID_ID}"


def test_comounted_controllers_each_get_the_path() -> None:
    info = load("docker-cgroupfs-v1")
    assert info.v2_path is None
    assert info.v1_paths["cpu"] == info.v1_paths["cpuacct"] == info.v1_paths["net_prio"]
    assert info.v1_paths["cpu"].startswith("/docker/3f9a1c0b")


def test_v1_decides_when_v2_is_the_root() -> None:
    info = load("k8s-containerd-cgroupfs-v1-besteffort")
    assert info.v2_path == "/"
    assert info.container is not None and info.container.id.startswith("0123456789ab")


def test_inside_cgroupns_is_all_root() -> None:
    info = load("inside-cgroupns")
    assert info.v2_path == "/"
    assert set(info.v1_paths.values()) == {"/"}


def test_v2_container_preferred_over_a_different_v1_one() -> None:
    v1_id, v2_id = "1" * 64, "2" * 64
    info = parse_proc_cgroup(f"4:pids:/docker/{v1_id}\n0::/system.slice/docker-{v2_id}.scope\n")
    assert info.container == ContainerRef(v2_id, "docker")


def test_v1_preference_order_name_systemd_first() -> None:
    sd_id, mem_id = "a" * 64, "b" * 64
    text = f"3:memory:/docker/{mem_id}\n1:name=systemd:/system.slice/docker-{sd_id}.scope\n"
    assert parse_proc_cgroup(text).container == ContainerRef(sd_id, "docker")


def test_deleted_suffix_is_stripped() -> None:
    cid = "c" * 64
    info = parse_proc_cgroup(f"0::/system.slice/docker-{cid}.scope (deleted)\n")
    assert info.v2_path == f"/system.slice/docker-{cid}.scope"
    assert info.container == ContainerRef(cid, "docker")


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "garbage", "x:y:/docker/" + "d" * 64, "0::relative/path", ":::", "0:/only-two"],
)
def test_malformed_input_is_skipped(text: str) -> None:
    assert parse_proc_cgroup(text) == CgroupInfo(None, {}, None)


ID = "e" * 64
UID_BESTEFFORT_SD = UID_BESTEFFORT.replace("-", "_")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # kind: a pod's container inside a node container; the deepest container wins
        (
            f"/system.slice/docker-{'f' * 64}.scope/kubelet.slice/kubelet-kubepods.slice/"
            f"kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_BESTEFFORT_SD}"
            f".slice/cri-containerd-{ID}.scope",
            ContainerRef(ID, "containerd", UID_BESTEFFORT, "besteffort"),
        ),
        # guaranteed pod, systemd driver: no QoS slice
        (
            f"/kubepods.slice/kubepods-pod{UID_SYSTEMD.replace('-', '_')}.slice/crio-{ID}.scope",
            ContainerRef(ID, "cri-o", UID_SYSTEMD, "guaranteed"),
        ),
        # static pod: the uid is a 32-hex config hash
        (
            f"/kubepods/burstable/pod{'0a' * 16}/{ID}",
            ContainerRef(ID, "unknown", "0a" * 16, "burstable"),
        ),
        (
            f"/kubepods/besteffort/pod{UID_BESTEFFORT}/crio-{ID}",
            ContainerRef(ID, "cri-o", UID_BESTEFFORT, "besteffort"),
        ),
        (f"/kubepods/besteffort/pod{UID_BESTEFFORT}/crio-conmon-{ID}", None),
        (f"/libpod_parent/libpod-{ID}", ContainerRef(ID, "podman")),
        (f"/system.slice/nerdctl-{ID}.scope", ContainerRef(ID, "containerd")),
        (f"/docker/{'f' * 64}/docker/{ID}", ContainerRef(ID, "docker")),  # docker-in-docker
        (f"/machine.slice/libpod-{ID}.scope/container/sub", ContainerRef(ID, "podman")),
        (f"/system.slice/other-{ID}.scope", None),  # unknown prefix: not a known runtime's
        (f"/system.slice/docker-{ID[:63]}.scope", None),  # 63 hex: not an id
        (f"/system.slice/docker-{ID.upper()}.scope", None),
        ("/process_api/1e6ad106eaf7187a7388fd2d539c1f68", None),  # 32 hex: not a container id
        ("/", None),
        ("", None),
        ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-foo.scope", None),
    ],
)
def test_container_from_path(path: str, expected: ContainerRef | None) -> None:
    assert container_from_path(path) == expected
