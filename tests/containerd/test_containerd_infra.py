"""Proves the containerd test infrastructure: CRI annotations in the bundle, init pid, cgroups.

(Not test_infra.py: tests/ has no __init__.py, so two test modules of one basename cannot be
collected in one pytest run with the default import mode.)
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # types only: two conftest.py modules share the name at run time
    from tests.containerd.conftest import CtrContainer, CtrFactory, Pod

pytestmark = pytest.mark.containerd

CGROUP_ROOT = Path("/sys/fs/cgroup")


def proc_cgroups(pid: int) -> dict[str, str]:
    """/proc/<pid>/cgroup as {controllers: path}; the v2 line's controllers are ""."""
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        out[controllers] = path
    return out


def task_pid(cid: str) -> int:
    """The task's pid as containerd reports it (`ctr tasks ls`), independent of init.pid."""
    out = subprocess.run(
        ["ctr", "-n", "k8s.io", "tasks", "ls"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    for line in out.splitlines()[1:]:
        task, pid, status = line.split()
        if task == cid:
            assert status == "RUNNING", line
            return int(pid)
    raise AssertionError(f"{cid} not in ctr tasks ls:\n{out}")


def test_cri_annotations_land_in_bundle_config(cri_container: CtrContainer, cri_pod: Pod) -> None:
    annotations = cri_container.config()["annotations"]
    cri = {k: v for k, v in annotations.items() if k.startswith("io.kubernetes.")}
    assert cri == {
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.container-name": "app",
        "io.kubernetes.cri.sandbox-name": "web-7f9c",
        "io.kubernetes.cri.sandbox-namespace": "shop",
        "io.kubernetes.cri.sandbox-uid": cri_pod.uid,
    }


def test_init_pid_is_the_containers_pid1(cri_container: CtrContainer) -> None:
    pid = int((cri_container.bundle / "init.pid").read_text())
    assert pid == cri_container.pid == task_pid(cri_container.id)
    status = Path(f"/proc/{pid}/status").read_text()
    assert f"NSpid:\t{pid}\t1\n" in status
    assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x003600\x00"


def test_cgroups_follow_kubelet_cgroupfs_layout(cri_container: CtrContainer, cri_pod: Pod) -> None:
    text = Path(f"/proc/{cri_container.pid}/cgroup").read_text()
    print(f"/proc/{cri_container.pid}/cgroup:\n{text}")  # shown with -s / -rP
    want = f"/kubepods/besteffort/pod{cri_pod.uid}/{cri_container.id}"
    cgroups = proc_cgroups(cri_container.pid)
    # Hybrid host: every v1 hierarchy, name=systemd and the v2 ("") line name the same path.
    assert "" in cgroups and "name=systemd" in cgroups and "memory" in cgroups
    assert set(cgroups.values()) == {want}, cgroups
    assert cri_container.config()["linux"]["cgroupsPath"] == want


def test_default_cgroup_path_is_namespace_slash_id(ctr_factory: CtrFactory) -> None:
    c = ctr_factory("plain", "sleep", "3600")
    assert set(proc_cgroups(c.pid).values()) == {f"/k8s.io/{c.id}"}


def test_close_removes_tasks_containers_and_pod_cgroups(
    ctr_factory: CtrFactory, cri_pod: Pod
) -> None:
    pod_dir = f"kubepods/besteffort/pod{cri_pod.uid}"
    c = ctr_factory("closing", "sh", "-c", "echo hello; exec sleep 3600", cgroup=f"/{pod_dir}/x")
    assert (CGROUP_ROOT / "memory" / pod_dir / "x").is_dir()
    c.wait_for_log("hello")
    ctr_factory.close()
    listed = subprocess.run(
        ["ctr", "-n", "k8s.io", "containers", "ls", "-q"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert c.id not in listed
    assert not c.bundle.exists()
    assert not Path(f"/proc/{c.pid}").exists()
    assert not [h.name for h in CGROUP_ROOT.iterdir() if (h / pod_dir).exists()]
