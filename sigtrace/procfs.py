"""Reading /proc, with the root configurable (a DaemonSet sees the host's /proc under a mount).

The one parser of /proc for the project: a process's status (ids, signal masks), cmdline,
cgroup paths, task list, children and pid namespace. OS errors are mapped once here: a
process that is gone reads as None (or an empty list), never a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from sigtrace import wire
from sigtrace.escape import printable

# A cmdline is kept to its first 4 KiB (a 1 MB argument list would make every record of that
# process 1 MB); a cut one ends with CUT_MARK, so it is never cut silently (README: cmdline).
CMDLINE_MAX = 4096
CUT_MARK = f" …[cut at {CMDLINE_MAX} bytes]"

Pid = int | str  # a pid, or "self"


@dataclass(frozen=True)
class Status:
    """The parts of /proc/<tid>/status sigtrace uses."""

    name: str
    state: str  # R, S, D, T, t, Z, X...
    tgid: int
    tid: int
    ns_pid: int  # the process's id in its own (deepest) pid namespace
    ns_tid: int
    ns_depth: int  # 1 in the host's namespace
    uid: int
    sig_blk: int
    sig_ign: int
    sig_cgt: int
    tracer_pid: int
    pending: int = 0  # SigPnd | ShdPnd: queued for the thread or for its process
    ppid: int = 0
    cap_eff: int = 0  # effective capabilities

    @property
    def dispositions_known(self) -> bool:
        # A zombie has released its sighand: its SigCgt/SigIgn read 0, which is not SIG_DFL.
        return self.state not in ("Z", "X")

    def handler(self, sig: int) -> int:
        bit = 1 << (sig - 1)
        if self.sig_cgt & bit:
            return wire.HANDLER_FUNC
        if self.sig_ign & bit:
            return wire.HANDLER_IGN
        return wire.HANDLER_DFL

    def caught(self, sig: int) -> bool:
        return bool(self.sig_cgt & (1 << (sig - 1)))

    def ignored(self, sig: int) -> bool:
        return bool(self.sig_ign & (1 << (sig - 1)))

    def blocked(self, sig: int) -> bool:
        return bool(self.sig_blk & (1 << (sig - 1)))

    def blocked_when_sent(self, sig: int) -> bool | None:
        """Was `sig` blocked when it was sent, judged from this later read? None: can't tell.

        The kernel blocks a signal while its handler runs: a caught signal that is blocked
        but no longer pending was most likely read in its own handler, after it was
        delivered, and the mask it met when sent is unknown (not "blocked", which would
        make it pending).
        """
        bit = 1 << (sig - 1)
        if not self.sig_blk & bit:
            return False
        if self.sig_cgt & bit and not self.pending & bit:
            return None
        return True

    @property
    def unkillable(self) -> bool:
        # copy_process() gives every pid namespace's init SIGNAL_UNKILLABLE (the host's too).
        return self.ns_pid == 1


def parse_status(text: str) -> Status | None:
    """/proc/<tid>/status text → Status; None when a field it needs is missing. Pure."""
    f: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        f[key] = value.strip()
    if f.get("Tgid") == "0":
        # Read while release_task() detached its pids (State X): Tgid, NStgid and NSpid all
        # read 0, which is no pid at all. Unknown, not pid 0 (nor a namespace's init).
        return None
    try:
        nspid = f.get("NSpid", f["Pid"]).split()
        nstgid = f.get("NStgid", f["Tgid"]).split()
        return Status(
            name=f.get("Name", ""),
            state=f.get("State", "?")[:1],
            tgid=int(f["Tgid"]),
            tid=int(f["Pid"]),
            ns_pid=int(nstgid[-1]),
            ns_tid=int(nspid[-1]),
            ns_depth=len(nstgid),
            uid=int(f["Uid"].split()[0]),
            sig_blk=int(f["SigBlk"], 16),
            sig_ign=int(f["SigIgn"], 16),
            sig_cgt=int(f["SigCgt"], 16),
            tracer_pid=int(f.get("TracerPid", "0")),
            pending=int(f.get("SigPnd", "0"), 16) | int(f.get("ShdPnd", "0"), 16),
            ppid=int(f.get("PPid", "0")),
            cap_eff=int(f.get("CapEff", "0"), 16),
        )
    except (KeyError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class CgroupPaths:
    """/proc/<pid>/cgroup: the v2 path, and each v1 controller's (or name=...'s) path."""

    v2_path: str | None = None
    v1_paths: dict[str, str] = field(default_factory=dict)


_DELETED = " (deleted)"


def parse_cgroup(text: str) -> CgroupPaths:
    """/proc/<pid>/cgroup text (v1, v2 or hybrid) → CgroupPaths. Malformed lines are skipped.
    Pure."""
    v2_path: str | None = None
    v1_paths: dict[str, str] = {}
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, sep, path = rest.partition(":")
        if not sep or not hierarchy.isdigit() or not path.startswith("/"):
            continue
        path = path.removesuffix(_DELETED)  # a removed cgroup still names the container
        if hierarchy == "0" and not controllers:
            v2_path = path
            continue
        for controller in controllers.split(","):
            if controller:
                v1_paths[controller] = path
    return CgroupPaths(v2_path, v1_paths)


class Procfs:
    def __init__(self, root: str = "/proc") -> None:
        self.root = root

    def read(self, pid: Pid, name: str) -> bytes | None:
        try:
            with open(os.path.join(self.root, str(pid), name), "rb") as f:
                return f.read(CMDLINE_MAX + 2 if name == "cmdline" else 65536)
        except OSError:  # gone (ENOENT, ESRCH), hidden (EACCES), or a half-torn-down task
            return None

    def _text(self, pid: Pid, name: str) -> str | None:
        raw = self.read(pid, name)
        return None if raw is None else raw.decode("utf-8", "backslashreplace")

    def cmdline(self, pid: Pid) -> str | None:
        raw = self.read(pid, "cmdline")
        if not raw:
            return None  # gone, or a kernel thread / zombie (empty cmdline)
        # Cut when more than the bound's bytes remain beyond the final NUL terminator.
        cut = len(raw.removesuffix(b"\0") if len(raw) <= CMDLINE_MAX + 1 else raw) > CMDLINE_MAX
        raw = raw[:CMDLINE_MAX].rstrip(b"\0")
        text = printable(raw.replace(b"\0", b" ").decode("utf-8", "backslashreplace"))
        return text + CUT_MARK if cut else text

    def status(self, pid: Pid) -> Status | None:
        text = self._text(pid, "status")
        return None if text is None else parse_status(text)

    def cgroup(self, pid: Pid) -> CgroupPaths | None:
        """None when gone (or an empty file: a task being torn down)."""
        text = self._text(pid, "cgroup")
        return parse_cgroup(text) if text else None

    def wchan(self, pid: Pid) -> str:
        """The kernel function the task sleeps in ("" when running, gone or hidden)."""
        return (self.read(pid, "wchan") or b"").decode("ascii", "replace")

    def pids(self) -> list[int]:
        """Every process (and, unlisted but readable, thread) id in this /proc, sorted."""
        return self._ids(self.root)

    def tids(self, pid: Pid) -> list[int]:
        """The process's thread ids, sorted; [] when it is gone."""
        return self._ids(os.path.join(self.root, str(pid), "task"))

    def children(self, pid: int) -> list[int]:
        """From /proc/<pid>/task/*/children (CONFIG_PROC_CHILDREN), else by scanning PPid."""
        tids = self.tids(pid)
        if not tids:
            return []  # gone
        found: list[int] = []
        have_file = False
        for tid in tids:
            raw = self.read(pid, f"task/{tid}/children")
            if raw is not None:
                have_file = True
                found += [int(w) for w in raw.split() if w.isdigit()]
        if have_file:
            return sorted(set(found))
        return [p for p in self.pids() if (st := self.status(p)) and st.ppid == pid]

    def pidns_inum(self, pid: Pid) -> int:
        """The inode number of the task's pid namespace; 0 when gone."""
        try:
            link = os.readlink(os.path.join(self.root, str(pid), "ns", "pid"))
        except OSError:
            return 0
        # "pid:[4026531836]"
        digits = link.rpartition("[")[2].rstrip("]")
        return int(digits) if digits.isdigit() else 0

    @staticmethod
    def _ids(path: str) -> list[int]:
        try:
            return sorted(int(n) for n in os.listdir(path) if n.isdigit())
        except OSError:
            return []
