"""--pod with a real containerd: a container created with the annotations a CRI sets is
reported with its pod's name, namespace and uid, and the container's name in the pod."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.tracing import Tracer, exits, run_sigtrace, wait_for

if TYPE_CHECKING:  # types only: several conftest.py modules share the name at run time
    from tests.containerd.conftest import CtrContainer, Pod

pytestmark = pytest.mark.containerd


def ctr_kill(cid: str, sig: str) -> None:
    subprocess.run(
        ["ctr", "-n", "k8s.io", "tasks", "kill", "-s", sig, cid],
        check=True,
        capture_output=True,
        timeout=30,
    )


def test_pod_filter_names_the_pod(
    cri_container: CtrContainer, cri_pod: Pod, tmp_path: Path
) -> None:
    t = Tracer(
        ["--pod", f"{cri_pod.namespace}/{cri_pod.name}"], tmp_path / "t.jsonl", tmp_path / "t.err"
    )
    t.wait_started()
    ctr_kill(cri_container.id, "SIGTERM")
    ctr_kill(cri_container.id, "SIGKILL")
    wait_for(
        lambda: not Path(f"/proc/{cri_container.pid}").exists(), timeout=10, what="the task to die"
    )
    records = t.stop()

    to_pid1 = [
        r for r in records if r["type"] == "signal" and r["target"]["pid"] == cri_container.pid
    ]
    assert [(r["signal"], r["outcome"], r["reason"]) for r in to_pid1] == [
        ("SIGTERM", "ignored", "pid1_no_handler"),
        ("SIGKILL", "delivered", None),
    ]
    container = to_pid1[0]["target"]["container"]
    assert container["id"] == cri_container.id and container["runtime"] == "containerd"
    assert container["pod"] == {
        "name": cri_pod.name,
        "namespace": cri_pod.namespace,
        "uid": cri_pod.uid,
        "container": "app",
    }
    (ex,) = exits(records, pid=cri_container.pid)
    assert ex["exit_code"] == 137 and ex["process"]["container"]["pod"]["name"] == cri_pod.name


def test_unknown_pod_is_a_clear_error(containerd_daemon: None) -> None:
    r = run_sigtrace("--pod", "shop/no-such-pod")
    assert r.returncode == 7, r.stderr
    line = r.stderr.strip()
    assert "\n" not in line
    # What the runtimes do have follows (a fresh node: "no containers at all (… answered)").
    assert line.startswith("sigtrace: no pod 'no-such-pod' in namespace 'shop'; "), line
