"""Cgroup id ↔ cgroup path, for the v2 hierarchy and the v1 `pids` hierarchy.

A cgroup id (bpf_get_current_cgroup_id(), a task's cgroup->kn->id) is the kernfs node id of the
cgroup's directory, which 64-bit kernels also report as its inode number: os.stat(dir).st_ino
(and the d_ino that readdir returns) give the id, and a walk of the hierarchy maps ids back.
Ids are not reused within a boot, so a cached id → path stays true after the cgroup is removed.

The layout is found by probing files under <sys_root>/fs/cgroup, not by reading
/proc/self/mountinfo: a DaemonSet sees the host's /sys under e.g. /host/sys while its own
mountinfo describes its own mount namespace. `cgroup.controllers` marks a v2 root; a v1
hierarchy has `tasks`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Hierarchy = Literal["v2", "v1pids"]
HIERARCHIES: tuple[Hierarchy, ...] = ("v2", "v1pids")


@dataclass(frozen=True)
class CgroupLayout:
    mode: str  # 'unified' (v2 only) | 'hybrid' (v1 + v2) | 'legacy' (v1 only) | 'none'
    v2_root: str | None
    v1_pids_root: str | None

    def root(self, hierarchy: Hierarchy) -> str | None:
        if hierarchy == "v2":
            return self.v2_root
        if hierarchy == "v1pids":
            return self.v1_pids_root
        raise ValueError(f"unknown cgroup hierarchy {hierarchy!r}; expected one of {HIERARCHIES}")


def detect_layout(sys_root: str = "/sys") -> CgroupLayout:
    base = os.path.join(sys_root, "fs/cgroup")
    if _is_v2_root(base):
        return CgroupLayout("unified", base, None)
    unified = os.path.join(base, "unified")
    v2_root = unified if _is_v2_root(unified) else None
    pids = os.path.join(base, "pids")
    v1_pids_root = pids if os.path.exists(os.path.join(pids, "tasks")) else None
    # hybrid: v2 beside v1 controllers, whether or not pids is among them
    mode = "hybrid" if v2_root else "legacy" if v1_pids_root else "none"
    return CgroupLayout(mode, v2_root, v1_pids_root)


def _is_v2_root(path: str) -> bool:
    return os.path.exists(os.path.join(path, "cgroup.controllers"))


def walk_ids(root: str, max_depth: int = 64) -> dict[int, str]:
    """Every cgroup under `root` as id → path relative to it ('/' for the root itself)."""
    try:
        out = {os.stat(root).st_ino: "/"}
    except OSError:
        return {}
    stack = [(root, "", 0)]
    while stack:
        full, rel, depth = stack.pop()
        try:
            entries = list(os.scandir(full))
        except OSError:
            continue  # removed while we walked
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                ino = entry.inode()
            except OSError:
                continue
            child = f"{rel}/{entry.name}"
            out[ino] = child
            if depth + 1 < max_depth:
                stack.append((entry.path, child, depth + 1))
    return out


def _safe_relpath(path: str) -> str | None:
    """`path` as a cgroup path relative to a hierarchy root, or None if it could escape it."""
    if not path.startswith("/") or "\0" in path:
        return None
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        return None
    return "/".join(parts)


class CgroupIds:
    """id_of / path_of with a cache per hierarchy; a miss rescans at most once per interval."""

    def __init__(
        self,
        sys_root: str = "/sys",
        rescan_interval_ms: int = 500,
        max_entries: int = 16384,  # ids of live and recently removed cgroups, per hierarchy
        clock: Callable[[], float] = time.monotonic,
        layout: CgroupLayout | None = None,
    ) -> None:
        self.layout = layout or detect_layout(sys_root)
        self.rescan_interval = rescan_interval_ms / 1000
        self.max_entries = max_entries
        self._clock = clock
        self._paths: dict[Hierarchy, dict[int, str]] = {h: {} for h in HIERARCHIES}
        self._scanned_at: dict[Hierarchy, float | None] = {h: None for h in HIERARCHIES}

    def id_of(self, path: str, hierarchy: Hierarchy = "v2") -> int | None:
        root = self.layout.root(hierarchy)
        rel = _safe_relpath(path)
        if root is None or rel is None:
            return None
        try:
            ino = os.stat(os.path.join(root, rel)).st_ino
        except OSError:
            return None
        self._remember(hierarchy, {ino: "/" + rel})
        return ino

    def path_of(self, cgroup_id: int, hierarchy: Hierarchy = "v2") -> str | None:
        root = self.layout.root(hierarchy)
        if root is None:
            return None
        paths = self._paths[hierarchy]
        if cgroup_id in paths:
            return paths[cgroup_id]
        last = self._scanned_at[hierarchy]
        now = self._clock()
        if last is not None and now - last < self.rescan_interval:
            return None
        self._scanned_at[hierarchy] = now
        self._remember(hierarchy, walk_ids(root))
        return self._paths[hierarchy].get(cgroup_id)

    def _remember(self, hierarchy: Hierarchy, found: dict[int, str]) -> None:
        # Keep ids of removed cgroups (their last events still need a path) until too many.
        paths = self._paths[hierarchy]
        if len(paths) + len(found) > self.max_entries:
            paths.clear()
        paths.update(found)

    def ids_of_container(self, container_id: str) -> set[int]:
        """Every cgroup (v2 and v1 pids) whose path names this container: for a container the
        runtime could not tell us a pid of (runtime down, traced by full id)."""
        from sigtrace.containers.cgroup_path import container_from_path

        out: set[int] = set()
        for hierarchy in HIERARCHIES:
            root = self.layout.root(hierarchy)
            if root is None:
                continue
            found = walk_ids(root)
            self._remember(hierarchy, found)
            for cg_id, path in found.items():
                ref = container_from_path(path)
                if ref is not None and ref.id == container_id:
                    out.add(cg_id)
        return out

    def pids_in(self, cgroup_ids: tuple[int, ...] | set[int]) -> set[int]:
        """Every pid in these cgroups (either hierarchy): backends that filter containers in
        user space learn a container's processes before those die unseen."""
        pids: set[int] = set()
        for cg in cgroup_ids:
            for hierarchy in HIERARCHIES:
                rel, root = self.path_of(cg, hierarchy), self.layout.root(hierarchy)
                if rel is None or root is None:
                    continue
                try:
                    with open(os.path.join(root, rel.lstrip("/"), "cgroup.procs")) as f:
                        pids.update(int(p) for p in f.read().split())
                except (OSError, ValueError):
                    continue
        return pids
