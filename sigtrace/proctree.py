"""A container's process tree as `sigtrace explain`'s prediction sees it: PID 1 and the
processes below it, each with what it does with the stop signal, read from /proc now."""

from __future__ import annotations

from sigtrace.errors import ContainerNotFound
from sigtrace.predict import Proc
from sigtrace.procfs import Procfs

# Bounds on the walk: a fork bomb in the container must not make explain read all of /proc.
MAX_DEPTH = 6
MAX_PROCS = 256


def read_proc(
    procfs: Procfs, pid: int, signo: int, depth: int = 0, budget: list[int] | None = None
) -> Proc:
    """One process and the tree below it, as the predictor sees them."""
    budget = budget if budget is not None else [MAX_PROCS]
    budget[0] -= 1
    status = procfs.status(pid)
    if status is None:
        raise ContainerNotFound(f"process {pid} is gone")
    kids: list[Proc] = []
    if depth < MAX_DEPTH:
        for child in procfs.children(pid):
            if budget[0] <= 0:
                break
            try:
                kids.append(read_proc(procfs, child, signo, depth + 1, budget))
            except ContainerNotFound:
                continue  # exited while we looked
    return Proc(
        pid=pid,
        comm=status.name or "?",
        ns_pid=status.ns_pid,
        cmdline=procfs.cmdline(pid),
        caught=status.caught(signo),
        ignored=status.ignored(signo),
        blocked=status.blocked(signo),
        sigwait="sigtimedwait" in procfs.wchan(pid),
        children=tuple(kids),
    )
