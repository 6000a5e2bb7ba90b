"""CgroupIds on a fake /sys tree (ids are inode numbers there too) with a fake clock."""

from __future__ import annotations

import os
from pathlib import Path

from sigtrace.containers.cgroup_ids import CgroupIds, detect_layout


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_sys(root: Path, unified: bool = False, v2: bool = True, pids: bool = True) -> Path:
    base = root / "fs" / "cgroup"
    if unified:
        base.mkdir(parents=True)
        (base / "cgroup.controllers").write_text("")
        return root
    if v2:
        (base / "unified").mkdir(parents=True)
        (base / "unified" / "cgroup.controllers").write_text("")
    if pids:
        (base / "pids").mkdir(parents=True)
        (base / "pids" / "tasks").write_text("")
    return root


def test_layouts(tmp_path: Path) -> None:
    assert detect_layout(str(make_sys(tmp_path / "u", unified=True))).mode == "unified"
    hybrid = detect_layout(str(make_sys(tmp_path / "h")))
    assert (hybrid.mode, hybrid.v2_root, hybrid.v1_pids_root) == (
        "hybrid",
        f"{tmp_path}/h/fs/cgroup/unified",
        f"{tmp_path}/h/fs/cgroup/pids",
    )
    assert detect_layout(str(make_sys(tmp_path / "l", v2=False))).mode == "legacy"
    assert detect_layout(str(tmp_path / "missing")).mode == "none"


def test_id_of_and_path_of(tmp_path: Path) -> None:
    sys_root = make_sys(tmp_path)
    cg = tmp_path / "fs/cgroup/unified/docker/abc"
    cg.mkdir(parents=True)
    ids = CgroupIds(sys_root=str(sys_root))
    assert ids.id_of("/docker/abc") == os.stat(cg).st_ino
    fresh = CgroupIds(sys_root=str(sys_root))
    assert fresh.path_of(os.stat(cg).st_ino) == "/docker/abc"
    assert fresh.path_of(os.stat(tmp_path / "fs/cgroup/unified").st_ino) == "/"
    assert ids.id_of("/docker/abc", "v1pids") is None
    assert ids.id_of("/../../etc") is None and ids.id_of("docker/abc") is None


def test_rescan_at_most_once_per_interval(tmp_path: Path) -> None:
    sys_root = make_sys(tmp_path)
    clock = FakeClock()
    ids = CgroupIds(sys_root=str(sys_root), rescan_interval_ms=500, clock=clock)
    assert ids.path_of(123456789) is None  # first miss scans
    late = tmp_path / "fs/cgroup/pids/late"
    late.mkdir()
    ino = os.stat(late).st_ino
    clock.now += 0.4
    assert ids.path_of(ino, "v1pids") == "/late"  # per hierarchy: pids not scanned yet
    late2 = tmp_path / "fs/cgroup/unified/late2"
    late2.mkdir()
    assert ids.path_of(os.stat(late2).st_ino) is None  # v2 scanned 0.4 s ago
    clock.now += 0.2
    assert ids.path_of(os.stat(late2).st_ino) == "/late2"


def test_removed_cgroup_keeps_its_path(tmp_path: Path) -> None:
    sys_root = make_sys(tmp_path)
    gone = tmp_path / "fs/cgroup/unified/gone"
    gone.mkdir()
    ino = os.stat(gone).st_ino
    clock = FakeClock()
    ids = CgroupIds(sys_root=str(sys_root), rescan_interval_ms=0, clock=clock)
    assert ids.path_of(ino) == "/gone"
    gone.rmdir()
    ids.path_of(999999999)  # a rescan
    assert ids.path_of(ino) == "/gone"
