"""The project's own exceptions, each with the exit code the CLI returns for it.

Raised at the edges (kernel, /proc, runtimes); the CLI prints `sigtrace: <message>`
on one line and exits with `code`. Never a traceback for bad input or a missing feature.
"""

from __future__ import annotations


class SigtraceError(Exception):
    code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(SigtraceError):
    """Bad input on the command line (unknown signal name, bad pid)."""

    code = 2


class PrivilegeError(SigtraceError):
    """Not root, or lacking CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN."""

    code = 3


class KernelFeatureError(SigtraceError):
    """The kernel lacks what the backend needs (BTF, BPF, a tracepoint)."""

    code = 4


class LibraryError(SigtraceError):
    """A system library or package the backend needs is missing (libbpf, BCC, headers)."""

    code = 5


class BackendError(SigtraceError):
    """The backend failed while loading or tracing."""

    code = 6


class ContainerNotFound(SigtraceError):
    """A --container/--pod that matches nothing (or too much)."""

    code = 7


class RuntimeUnavailable(SigtraceError):
    """A container runtime's socket is absent or not answering."""

    code = 8


class RuntimeAbsent(RuntimeUnavailable):
    """The runtime is not installed here (no socket, no state directory): nothing to list,
    which is no failure. A subclass so that a lookup by id still treats it as 'not there'."""


class OutputError(SigtraceError):
    """Writing the records failed mid-run (disk full, I/O error, a reader gone from --output)."""

    code = 11


class ReaderGone(OutputError):
    """stdout's reader went away (`sigtrace | head`): the end the pipeline asked for. Quiet, and
    the status a shell reports for a command SIGPIPE ended (128 + 13), as coreutils give."""

    code = 141

    def __init__(self) -> None:
        super().__init__("")
