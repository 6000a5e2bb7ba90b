"""Reading /proc, with the root configurable (a DaemonSet sees the host's /proc under a mount).

OS errors are mapped once here: a process that is gone reads as None, never a traceback.
"""

from __future__ import annotations

import os

from sigtrace.escape import printable

# A cmdline is kept to its first 4 KiB (a 1 MB argument list would make every record of that
# process 1 MB); a cut one ends with CUT_MARK, so it is never cut silently (README: cmdline).
CMDLINE_MAX = 4096
CUT_MARK = f" …[cut at {CMDLINE_MAX} bytes]"


class Procfs:
    def __init__(self, root: str = "/proc") -> None:
        self.root = root

    def read(self, pid: int, name: str) -> bytes | None:
        try:
            with open(os.path.join(self.root, str(pid), name), "rb") as f:
                return f.read(CMDLINE_MAX + 2 if name == "cmdline" else 65536)
        except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
            return None

    def cmdline(self, pid: int) -> str | None:
        raw = self.read(pid, "cmdline")
        if not raw:
            return None  # gone, or a kernel thread / zombie (empty cmdline)
        # Cut when more than the bound's bytes remain beyond the final NUL terminator.
        cut = len(raw.removesuffix(b"\0") if len(raw) <= CMDLINE_MAX + 1 else raw) > CMDLINE_MAX
        raw = raw[:CMDLINE_MAX].rstrip(b"\0")
        text = printable(raw.replace(b"\0", b" ").decode("utf-8", "backslashreplace"))
        return text + CUT_MARK if cut else text

    def status(self, pid: int) -> dict[str, str] | None:
        raw = self.read(pid, "status")
        if raw is None:
            return None
        out = {}
        for line in raw.decode("utf-8", "backslashreplace").splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
        return out
