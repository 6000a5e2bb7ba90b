"""The tracing options shared by `sigtrace` itself and `sigtrace daemon`, and the config
they build."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sigtrace import signals
from sigtrace.config import TraceConfig
from sigtrace.errors import UsageError

BACKENDS = ["auto", "core", "bcc", "tracefs", "ptrace"]
# Pids are below pid_max, at most PID_MAX_LIMIT: 4194304 on 64-bit (include/linux/threads.h).
MAX_PID = (1 << 22) - 1


F = TypeVar("F", bound=Callable[..., Any])
if TYPE_CHECKING:  # click >= 8.4 types ParamType by its value; older clicks (>= 8.1) cannot
    _FloatParam = click.ParamType[float]  # subscript it at run time
else:
    _FloatParam = click.ParamType


class Seconds(_FloatParam):
    """A positive, finite number of seconds (`nan` and `inf` are floats too, but no duration)."""

    name = "seconds"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds.", param, ctx)
        if not (math.isfinite(seconds) and seconds > 0):
            self.fail(f"{value!r} is not a positive, finite number of seconds.", param, ctx)
        return seconds


def trace_options(fn: F) -> F:
    decorators = [
        click.option(
            "--pid",
            "pids",
            type=int,
            multiple=True,
            metavar="PID",
            help="Only signals sent by or to this process or thread (repeatable).",
        ),
        click.option(
            "--signal",
            "-s",
            "sigs",
            multiple=True,
            metavar="SIG",
            help="TERM, SIGTERM, 15, RTMIN+n or all (repeatable, or comma-separated). "
            "Default: TERM, KILL, INT, QUIT, HUP.",
        ),
        click.option(
            "--container",
            "-c",
            "containers",
            multiple=True,
            metavar="NAME|ID",
            help="Only signals sent by or to this container: name, id or id prefix (repeatable).",
        ),
        click.option(
            "--pod",
            "pods",
            multiple=True,
            metavar="[NAMESPACE/]NAME",
            help="Only signals sent by or to this Kubernetes pod's containers (repeatable).",
        ),
        click.option(
            "--wait",
            is_flag=True,
            help="Wait for --container/--pod to appear instead of failing; "
            "follow restarts either way.",
        ),
        click.option(
            "--backend",
            type=click.Choice(BACKENDS),
            default="auto",
            show_default=True,
            help="How to trace; auto picks one and says why.",
        ),
        click.option(
            "--buffer-size",
            envvar="SIGTRACE_BUFFER_SIZE",
            default="4M",
            show_default=True,
            metavar="SIZE",
            help="Kernel buffer for records (bytes, or with K/M): the BPF ring buffer, "
            "rounded up to a power of two pages; tracefs splits it per CPU. Records that "
            "find it full are counted as lost.",
        ),
        click.option(
            "--syscalls/--no-syscalls",
            default=None,
            help="Hook the kill-family syscalls: adds failed kill() calls (EPERM, ESRCH) and "
            "fan-out counts, at a cost to every syscall on the host while tracing "
            "[default: off].",
        ),
        click.option("--verbose", "-v", is_flag=True, help="Show libbpf's log."),
        click.option(
            "--proc-root",
            envvar="SIGTRACE_PROC_ROOT",
            default="/proc",
            show_default=True,
            help="The host's /proc (a DaemonSet mounts it elsewhere).",
        ),
        click.option(
            "--sys-root",
            envvar="SIGTRACE_SYS_ROOT",
            default="/sys",
            show_default=True,
            help="The host's /sys (BTF, tracefs, cgroups).",
        ),
    ]
    for d in reversed(decorators):
        fn = d(fn)
    return fn


def make_config(
    pids: tuple[int, ...],
    sigs: tuple[str, ...],
    verbose: bool,
    proc_root: str,
    sys_root: str,
    containers: tuple[str, ...] = (),
    pods: tuple[str, ...] = (),
    wait: bool = False,
    buffer_size: str = "4M",
    syscalls: bool | None = None,
) -> TraceConfig:
    for p in pids:
        if p <= 0:
            raise UsageError(f"--pid takes a positive process id, not {p}")
        if p > MAX_PID:
            raise UsageError(f"--pid {p}: beyond the largest process id Linux has ({MAX_PID})")
    check_roots(proc_root, sys_root)
    return TraceConfig(
        signals=signals.parse_specs(sigs),
        pids=tuple(pids),
        verbose=verbose,
        proc_root=proc_root,
        sys_root=sys_root,
        containers=tuple(containers),
        pods=tuple(pods),
        wait=wait,
        ringbuf_bytes=parse_size(buffer_size),
        syscalls=bool(syscalls),
    )


def check_roots(proc_root: str, sys_root: str | None = None) -> None:
    """A --proc-root that is not a procfs, or a --sys-root that does not exist, is a typo: say
    so (exit 2) instead of tracing blind. An empty --sys-root stays allowed: it is how a kernel
    without BTF or tracefs is simulated (the backends then exit 4)."""
    # Any procfs has its init's entry ("1"), and "self" even under hidepid.
    if not any(os.path.lexists(os.path.join(proc_root, e)) for e in ("1", "self")):
        why = "not a proc filesystem" if os.path.isdir(proc_root) else "no such directory"
        raise UsageError(f"--proc-root {proc_root!r}: {why}")
    if sys_root is not None and not os.path.isdir(sys_root):
        raise UsageError(f"--sys-root {sys_root!r}: no such directory")


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
MIN_BUFFER = 4096
MAX_BUFFER = 1 << 30  # the ring buffer's map size is a u32 of bytes, and a power of two


def parse_size(text: str) -> int:
    """`4M`, `64K`, `65536`, `1MiB` -> bytes; a UsageError for anything else."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:I?B)?\s*", text.upper())
    if m is None:
        raise UsageError(f"--buffer-size: {text!r} is not a size like 4M, 512K or 65536")
    size = int(m.group(1)) * _UNITS[m.group(2)]
    if not MIN_BUFFER <= size <= MAX_BUFFER:
        raise UsageError(f"--buffer-size: {text!r} is outside 4K..1G")
    return size
