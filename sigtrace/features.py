"""Probes of what this kernel and this process can do. Each returns (ok, detail).

The root of /sys and /proc is a parameter, so tests and `auto` can hide a feature through
the project's own configuration instead of patching the kernel.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import NamedTuple

from sigtrace.procfs import Procfs

CAP_NET_ADMIN = 12
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
    """This process's own capabilities: from its own /proc first, as --proc-root may be another
    pid namespace's procfs (or a typo), where `self` is not this process."""
    for root in dict.fromkeys(("/proc", proc_root)):
        st = Procfs(root).status("self")
        if st is not None:
            return st.cap_eff
    return 0


_BPF_CAPS = (("CAP_BPF", CAP_BPF), ("CAP_PERFMON", CAP_PERFMON))


def bpf_privileges(proc_root: str = "/proc") -> Probe:
    caps = effective_caps(proc_root)
    if caps & (1 << CAP_SYS_ADMIN) or (caps & (1 << CAP_BPF) and caps & (1 << CAP_PERFMON)):
        return Probe(True, "CAP_BPF+CAP_PERFMON (or CAP_SYS_ADMIN) held")
    missing = [n for n, bit in _BPF_CAPS if not caps & (1 << bit)]
    return Probe(
        False,
        f"missing {' and '.join(missing)} (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN): "
        "run with sudo",
    )


def proc_connector_privileges(proc_root: str = "/proc") -> Probe:
    """The process-events connector (exit codes for bcc and tracefs) listens only with
    CAP_NET_ADMIN (cn_proc_mcast_ctl() in drivers/connector/cn_proc.c)."""
    if effective_caps(proc_root) & (1 << CAP_NET_ADMIN):
        return Probe(True, "CAP_NET_ADMIN held")
    return Probe(False, "missing CAP_NET_ADMIN (the process-events connector needs it)")


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


def kernel_version(release: str | None = None) -> tuple[int, int] | None:
    """(major, minor) of a release string ("6.18.0-1-amd64" → (6, 18)), by default the
    running kernel's; None when it does not start so."""
    m = re.match(r"(\d+)\.(\d+)", kernel_release() if release is None else release)
    return (int(m.group(1)), int(m.group(2))) if m else None
