"""Kill-family syscall numbers per architecture, for the kernel side's raw syscall hooks.

Only architectures whose numbers and register layout were checked are listed; elsewhere the
kernel side uses the per-syscall tracepoints, which need no numbers.
"""

from __future__ import annotations

import os

# arch/x86/entry/syscalls/syscall_64.tbl
X86_64 = {
    "kill": 62,
    "tkill": 200,
    "tgkill": 234,
    "pidfd_send_signal": 424,
    "rt_sigqueueinfo": 129,
    "rt_tgsigqueueinfo": 297,
}
TABLES = {"x86_64": X86_64}


def table(machine: str | None = None) -> dict[str, int] | None:
    return TABLES.get(machine or os.uname().machine)
