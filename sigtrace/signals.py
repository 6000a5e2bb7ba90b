"""Signal names, numbers, si_code names and default actions (Linux, x86/arm generic numbering).

Pure: no /proc, no kernel. The tables mirror include/uapi/asm-generic/signal.h,
include/uapi/asm-generic/siginfo.h and the sig_kernel_* masks in include/linux/signal.h.
"""

from __future__ import annotations

from collections.abc import Iterable

from sigtrace.errors import UsageError

NSIG = 64
# The kernel's real-time signals start at 32; glibc keeps 32 and 33 for itself, so the
# SIGRTMIN that programs and `kill -l` see is 34. RTMIN+n follows glibc.
SIGRTMIN = 34
SIGRTMAX = 64

_CLASSIC = {
    1: "SIGHUP",
    2: "SIGINT",
    3: "SIGQUIT",
    4: "SIGILL",
    5: "SIGTRAP",
    6: "SIGABRT",
    7: "SIGBUS",
    8: "SIGFPE",
    9: "SIGKILL",
    10: "SIGUSR1",
    11: "SIGSEGV",
    12: "SIGUSR2",
    13: "SIGPIPE",
    14: "SIGALRM",
    15: "SIGTERM",
    16: "SIGSTKFLT",
    17: "SIGCHLD",
    18: "SIGCONT",
    19: "SIGSTOP",
    20: "SIGTSTP",
    21: "SIGTTIN",
    22: "SIGTTOU",
    23: "SIGURG",
    24: "SIGXCPU",
    25: "SIGXFSZ",
    26: "SIGVTALRM",
    27: "SIGPROF",
    28: "SIGWINCH",
    29: "SIGIO",
    30: "SIGPWR",
    31: "SIGSYS",
}
_ALIASES = {"SIGIOT": 6, "SIGPOLL": 29, "SIGCLD": 17, "SIGUNUSED": 31}

SIGKILL = 9
SIGTERM = 15
SIGCHLD = 17
SIGSTOP = 19

DEFAULT_SIGNALS = (15, 9, 2, 3, 1)  # TERM, KILL, INT, QUIT, HUP

# Default dispositions (include/linux/signal.h).
KERNEL_ONLY = frozenset({SIGKILL, SIGSTOP})
KERNEL_IGNORE = frozenset({18, 17, 28, 23})  # CONT, CHLD, WINCH, URG
KERNEL_STOP = frozenset({19, 20, 21, 22})
KERNEL_COREDUMP = frozenset({3, 4, 5, 6, 7, 8, 11, 24, 25, 31})


def name(signo: int) -> str:
    """Canonical name: SIGTERM, SIGRTMIN+3, SIGRTMAX, SIG32."""
    if signo in _CLASSIC:
        return _CLASSIC[signo]
    if signo == SIGRTMAX:
        return "SIGRTMAX"
    if SIGRTMIN <= signo < SIGRTMAX:
        return "SIGRTMIN" if signo == SIGRTMIN else f"SIGRTMIN+{signo - SIGRTMIN}"
    if 1 <= signo <= NSIG:
        return f"SIG{signo}"
    return f"SIG?{signo}"


def _parse_one(text: str) -> int:
    spec = text.strip().upper()
    if spec.isascii() and spec.isdigit():  # not str.isdigit() alone: '²' is a digit to it
        n = int(spec)
        if 1 <= n <= NSIG:
            return n
        raise UsageError(f"signal number out of range 1-{NSIG}: {text!r}")
    if not spec.startswith("SIG"):
        spec = "SIG" + spec
    for num, nm in _CLASSIC.items():
        if nm == spec:
            return num
    if spec in _ALIASES:
        return _ALIASES[spec]
    for base, anchor in (("SIGRTMIN", SIGRTMIN), ("SIGRTMAX", SIGRTMAX)):
        if spec == base:
            return anchor
        if spec.startswith(base) and spec[len(base) : len(base) + 1] in "+-":
            off = spec[len(base) :]
            if off[1:].isascii() and off[1:].isdigit():
                n = anchor + int(off)
                if SIGRTMIN <= n <= SIGRTMAX:
                    return n
            raise UsageError(f"real-time signal out of range: {text!r}")
    if spec.startswith("SIG") and spec[3:].isascii() and spec[3:].isdigit():
        return _parse_one(spec[3:])
    raise UsageError(f"unknown signal: {text!r} (try TERM, SIGKILL, 15, RTMIN+2 or all)")


def parse_specs(specs: Iterable[str]) -> frozenset[int]:
    """Signal numbers from --signal values; each may be comma-separated. None given → defaults;
    a value that names no signal (`--signal ''`, `--signal ,`) is an error, not the defaults."""
    out: set[int] = set()
    for raw in specs:
        if not raw.replace(",", "").strip():
            raise UsageError(f"--signal {raw!r} names no signal (try TERM, 15, RTMIN+2 or all)")
        for part in raw.split(","):
            if not part.strip():
                continue
            if part.strip().lower() == "all":
                out.update(range(1, NSIG + 1))
            else:
                out.add(_parse_one(part))
    return frozenset(out) if out else frozenset(DEFAULT_SIGNALS)


def mask_of(signals: Iterable[int]) -> int:
    """The BPF side's filter: bit (sig - 1) selects sig."""
    mask = 0
    for s in signals:
        mask |= 1 << (s - 1)
    return mask


def names_of_mask(mask: int) -> list[str]:
    """A kernel signal mask (bit n-1 for signal n, as SigCgt) → names, by number."""
    return [name(s) for s in range(1, NSIG + 1) if mask >> (s - 1) & 1]


def default_action(signo: int) -> str:
    """What SIG_DFL does: terminate, core, stop or ignore."""
    if signo in KERNEL_IGNORE:
        return "ignore"
    if signo in KERNEL_STOP:
        return "stop"
    if signo in KERNEL_COREDUMP:
        return "core"
    return "terminate"


# si_code values (include/uapi/asm-generic/siginfo.h). Negative codes come from user space.
_SI_CODES = {
    0: "SI_USER",
    0x80: "SI_KERNEL",
    -1: "SI_QUEUE",
    -2: "SI_TIMER",
    -3: "SI_MESGQ",
    -4: "SI_ASYNCIO",
    -5: "SI_SIGIO",
    -6: "SI_TKILL",
    -7: "SI_DETHREAD",
    -60: "SI_ASYNCNL",
}
# Positive codes below SI_KERNEL are per-signal (the kernel generated the signal itself).
_PER_SIGNAL = {
    17: {
        1: "CLD_EXITED",
        2: "CLD_KILLED",
        3: "CLD_DUMPED",
        4: "CLD_TRAPPED",
        5: "CLD_STOPPED",
        6: "CLD_CONTINUED",
    },
    11: {1: "SEGV_MAPERR", 2: "SEGV_ACCERR", 3: "SEGV_BNDERR", 4: "SEGV_PKUERR"},
    7: {1: "BUS_ADRALN", 2: "BUS_ADRERR", 3: "BUS_OBJERR", 4: "BUS_MCEERR_AR", 5: "BUS_MCEERR_AO"},
    8: {
        1: "FPE_INTDIV",
        2: "FPE_INTOVF",
        3: "FPE_FLTDIV",
        4: "FPE_FLTOVF",
        5: "FPE_FLTUND",
        6: "FPE_FLTRES",
        7: "FPE_FLTINV",
        8: "FPE_FLTSUB",
    },
    4: {
        1: "ILL_ILLOPC",
        2: "ILL_ILLOPN",
        3: "ILL_ILLADR",
        4: "ILL_ILLTRP",
        5: "ILL_PRVOPC",
        6: "ILL_PRVREG",
        7: "ILL_COPROC",
        8: "ILL_BADSTK",
    },
    5: {1: "TRAP_BRKPT", 2: "TRAP_TRACE", 3: "TRAP_BRANCH", 4: "TRAP_HWBKPT"},
    29: {1: "POLL_IN", 2: "POLL_OUT", 3: "POLL_MSG", 4: "POLL_ERR", 5: "POLL_PRI", 6: "POLL_HUP"},
    31: {1: "SYS_SECCOMP"},
}


def code_name(signo: int, code: int) -> str:
    if code in _SI_CODES:
        return _SI_CODES[code]
    per = _PER_SIGNAL.get(signo, {})
    return per.get(code, f"SI_CODE({code})")
