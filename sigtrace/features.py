"""Probes of what this kernel and this process can do. Each returns (ok, detail).

The root of /sys and /proc is a parameter, so tests and `auto` can hide a feature through
the project's own configuration instead of patching the kernel.
"""

from __future__ import annotations

import os
import subprocess
from typing import NamedTuple

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


class Probe(NamedTuple):
    ok: bool
    detail: str


def btf(sys_root: str = "/sys") -> Probe:
    path = os.path.join(sys_root, "kernel/btf/vmlinux")
    if os.path.exists(path):
        return Probe(True, f"{path} present")
    return Probe(False, f"kernel has no BTF ({path} missing): CO-RE needs CONFIG_DEBUG_INFO_BTF")


def bpf_syscall() -> Probe:
    """SIGTRACE_DENY_BPF=1 refuses bpf() as a seccomp or lockdown policy would, so that `auto`
    (and the tests) skip the BPF backends on a machine that has BPF."""
    if os.environ.get("SIGTRACE_DENY_BPF", "") not in ("", "0"):
        return Probe(False, "bpf() refused (SIGTRACE_DENY_BPF is set)")
    return Probe(True, "bpf() allowed")


def effective_caps(proc_root: str = "/proc") -> int:
    try:
        with open(os.path.join(proc_root, "self/status")) as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def bpf_privileges(proc_root: str = "/proc") -> Probe:
    caps = effective_caps(proc_root)
    if caps & (1 << CAP_SYS_ADMIN) or (caps & (1 << CAP_BPF) and caps & (1 << CAP_PERFMON)):
        return Probe(True, "CAP_BPF+CAP_PERFMON (or CAP_SYS_ADMIN) held")
    return Probe(False, "needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN): run with sudo")


def tracefs_root(sys_root: str = "/sys", mount: bool = False) -> str | None:
    """tracefs's path, mounting it at <sys>/kernel/tracing when asked and absent."""
    for cand in ("kernel/tracing", "kernel/debug/tracing"):
        path = os.path.join(sys_root, cand)
        if os.path.exists(os.path.join(path, "events")):
            return path
    if mount:
        path = os.path.join(sys_root, "kernel/tracing")
        r = subprocess.run(
            ["mount", "-t", "tracefs", "tracefs", path], capture_output=True, check=False
        )
        if r.returncode == 0 and os.path.exists(os.path.join(path, "events")):
            return path
    return None


def tracepoint(category: str, name: str, sys_root: str = "/sys", mount: bool = False) -> Probe:
    root = tracefs_root(sys_root, mount)
    if root is None:
        return Probe(False, "tracefs is not mounted")
    if os.path.isdir(os.path.join(root, "events", category, name)):
        return Probe(True, f"{category}:{name}")
    return Probe(False, f"no tracepoint {category}:{name}")


def kernel_release() -> str:
    return os.uname().release
