"""The tracers the benchmark compares: how to start each one, how to tell it is live, how
to count what it wrote and what it lost.

Modes: "ready" (stdout is a pipe; time to tracing), "default" (its default filters, or
the nearest it has to sigtrace's five signals) and "all" (every signal), both writing to
a file.

sigtrace runs once per backend: core (the default, the reference every ratio is against),
core again with --syscalls (the kill-family syscalls hooked: failed calls and fan-out
counts, at a cost to every syscall on the host), bcc, tracefs and ptrace. ptrace traces given
processes only: its argv names "{pid}", the storm (or, for time to tracing, an idle storm
waiting for its go), which must exist before it starts.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
SIGTRACE = REPO / ".venv" / "bin" / "sigtrace"
SYSTEM_PYTHON = "/usr/bin/python3"
DEFAULT_SIGNALS = (1, 2, 3, 9, 15)  # HUP INT QUIT KILL TERM: sigtrace's default

LOST_RE = re.compile(rb"lost (\d+) events", re.IGNORECASE)


@dataclass
class Counts:
    records: int  # records about signals the tracer wrote (JSONL records / text lines)
    signals: int  # of which one per generated signal
    lost: int  # what the tracer says it dropped
    syscalls: int = 0  # sigtrace: signal records joined with their kill() record


@dataclass
class Tracer:
    name: str
    argv: dict[str, list[str]]  # mode -> argv; "{out}": the output file, "{pid}": the target
    marker: bytes  # seen on stdout (ready) or in the output file once tracing is live
    key: str = ""  # what --only selects it by
    marker_in_file: bool = True  # False: the file is block-buffered, wait instead
    uses_output_flag: bool = False  # writes the file itself (else stdout goes there)
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM
    unavailable: str = ""  # why it cannot run here
    records_per_kill: int = 1  # lines it writes for one kill(getpid(), SIGUSR1)
    # column -> footnote: "n/a" in that column (the tracer cannot do it), with the reason
    na: dict[str, str] = field(default_factory=dict)
    # column -> footnote: a number that needs a word on what it means for this tracer
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def needs_target(self) -> bool:
        return any("{pid}" in a for argv in self.argv.values() for a in argv)

    def command(self, mode: str, out: Path | None = None, pid: int | None = None) -> list[str]:
        return [a.replace("{out}", str(out)).replace("{pid}", str(pid)) for a in self.argv[mode]]

    def count(self, out: Path, stderr: bytes) -> Counts:
        raise NotImplementedError


def _count_lines(path: Path, skip_prefixes: tuple[bytes, ...] = ()) -> tuple[int, int]:
    """(lines, lines starting with one of skip_prefixes), reading in chunks."""
    lines = 0
    skipped = 0
    with open(path, "rb") as f:
        head = f.read(1 << 16)
        for pre in skip_prefixes:
            skipped += sum(1 for ln in head.splitlines() if ln.startswith(pre))
        f.seek(0)
        while chunk := f.read(1 << 22):
            lines += chunk.count(b"\n")
    return lines, skipped


def _tail(path: Path, n: int = 1 << 14) -> bytes:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - n))
        return f.read()


class SigtraceTracer(Tracer):
    def count(self, out: Path, stderr: bytes) -> Counts:
        stop = None
        for line in reversed(_tail(out).splitlines()):
            if b'"type":"stop"' in line:
                stop = json.loads(line)
                break
        if stop is None:
            raise RuntimeError(f"sigtrace wrote no stop record: {stderr[-300:]!r}")
        kinds = {k: v for k, v in stop["records"].items() if k != "lost"}
        joined = 0
        with open(out, "rb") as f:
            while chunk := f.read(1 << 22):
                joined += chunk.count(b'"syscall":"kill"')
        return Counts(sum(kinds.values()), kinds.get("signal", 0), stop["lost"], joined)


class SigsnoopTracer(Tracer):
    def count(self, out: Path, stderr: bytes) -> Counts:
        lines, header = _count_lines(out, (b"TIME ",))
        lost = sum(int(m) for m in LOST_RE.findall(stderr))
        return Counts(lines - header, lines - header, lost)


class BpftraceTracer(Tracer):
    def count(self, out: Path, stderr: bytes) -> Counts:
        lines, extra = _count_lines(out, (b"Attaching ", b"ready"))
        lost = 0
        with open(out, "rb") as f:
            while chunk := f.read(1 << 22):
                for m in LOST_RE.findall(chunk):
                    lost += int(m)
                    extra += 1
        lost += sum(int(m) for m in LOST_RE.findall(stderr))
        # bpftrace prints an empty line at exit
        blank = _tail(out).count(b"\n\n")
        return Counts(lines - extra - blank, lines - extra - blank, lost)


class BccTracer(Tracer):
    def count(self, out: Path, stderr: bytes) -> Counts:
        lines, ready = _count_lines(out, (b"ready",))
        m = re.search(rb"^lost (\d+)$", stderr, re.MULTILINE)
        return Counts(lines - ready, lines - ready, int(m.group(1)) if m else 0)


def kernel_header_dirs() -> tuple[str, str] | None:
    """(source, build) of the kernel headers BCC and bpftrace compile against.

    Debian splits them: the -amd64 package (build: config, generated headers) includes
    the -common one (source). scripts/setup links /lib/modules/$(uname -r)/build (and
    source) to the -amd64 directory, so the source half is found through its Makefile.
    """
    build = os.path.realpath(f"/lib/modules/{os.uname().release}/build")
    if not os.path.isdir(build):
        return None
    if os.path.exists(os.path.join(build, "include/linux/kconfig.h")):
        return build, build
    try:
        text = Path(build, "Makefile").read_text()
    except OSError:
        text = ""
    m = re.search(r"^include\s+(/\S+)/Makefile", text, re.MULTILINE)
    cands = [m.group(1)] if m else []
    cands += sorted(glob.glob(build.rsplit("-", 2)[0] + "*-common"))
    for src in cands:
        if os.path.exists(os.path.join(src, "include/linux/kconfig.h")):
            return src, build
    return None


def bpftrace_program(sigs: tuple[int, ...] | None) -> str:
    pred = ""
    if sigs:
        pred = "/" + " || ".join(f"args->sig == {s}" for s in sigs) + "/ "
    return (
        'BEGIN { printf("ready\\n"); } '
        f"tracepoint:signal:signal_generate {pred}"
        '{ printf("%d %d %s %d %d %d\\n", nsecs, pid, comm, args->sig, args->pid, '
        "args->result); }"
    )


def installed_copy() -> str:
    """Where .venv/bin/sigtrace imports sigtrace from, when that is not this working tree."""
    import subprocess

    try:
        where = subprocess.run(
            [str(VENV_PYTHON), "-I", "-c", "import sigtrace; print(sigtrace.__file__)"],
            capture_output=True,
            text=True,
            cwd="/",
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    if not where or Path(where).resolve().parent == (REPO / "sigtrace").resolve():
        return ""
    return str(Path(where).parent)


def snapshot(dest: Path, ref: str | None = None) -> Path:
    """A copy of the sigtrace package, so that every run measures the same code even while
    the tree is being edited: the working tree's, or a commit's (git archive). Returns the
    directory for PYTHONPATH."""
    import subprocess

    if ref is None:
        shutil.copytree(
            REPO / "sigtrace", dest / "sigtrace", ignore=shutil.ignore_patterns("__pycache__")
        )
    else:
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", ref, "sigtrace"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    # Byte-compiled, as pip leaves an installed package (PYTHONDONTWRITEBYTECODE may be set
    # here, and compiling ~50 modules at every start would add ~35 ms to time to tracing).
    subprocess.run(
        [str(VENV_PYTHON), "-m", "compileall", "-q", str(dest / "sigtrace")],
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    )
    return dest


PTRACE_CANNOT_LOSE = (
    "ptrace cannot lose a record: every signal stops the traced process until sigtrace has"
    " handled it, so the cost shows as the storm's slowdown instead"
)
PTRACE_ONE_PROCESS = (
    "ptrace traces only the processes it is given (--pid: the storm); the other rows trace"
    " the whole host"
)
PTRACE_GETPPID = (
    "ptrace: attached to the getppid() loop itself (--pid; PTRACE_SEIZE, no syscall tracing),"
    " which it would stop only at a signal; the other rows trace the whole host"
)
PTRACE_READY = "ptrace: attaching to one idle process (the storm, waiting for its go)"
TRACEFS_LOST = (
    "tracefs counts the ftrace events its buffer had no room for, not records: with --signal"
    " all a kill is 4 events (signal_generate, signal_deliver, sys_enter_kill, sys_exit_kill)"
    " for 2 records; with the default filters sys_exit_kill is not filtered in the kernel, so"
    " every SIGUSR1 of the storm is an event read and dropped in user space, and an overrun"
    " counts as lost"
)


def sigtrace_command(sigtrace_path: Path | None) -> tuple[list[str], dict[str, str]]:
    """(argv, env) that run sigtrace: from a source tree (python -m), or None: as installed."""
    if sigtrace_path is None:
        return [str(SIGTRACE)], {}
    return [str(VENV_PYTHON), "-m", "sigtrace"], {"PYTHONPATH": str(sigtrace_path)}


def _help(argv: list[str], env: dict[str, str]) -> str | None:
    """This sigtrace's --help (None: could not tell)."""
    import subprocess

    try:
        return subprocess.run(
            [*argv, "--help"],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            cwd="/",
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _backends(text: str | None) -> set[str] | None:
    """The --backend choices in a sigtrace's --help (None: could not tell)."""
    m = re.search(r"--backend \[([\w|]+)\]", text or "")
    return set(m.group(1).split("|")) if m else None


def sigtrace_tracers(sigtrace_path: Path | None = None) -> list[Tracer]:
    """One row per backend: core (the reference), core --syscalls, bcc, tracefs, ptrace."""
    st, st_env = sigtrace_command(sigtrace_path)
    missing = "" if VENV_PYTHON.exists() else f"{VENV_PYTHON} missing"
    text = _help(st, st_env) if not missing else None
    has = _backends(text)
    out: list[Tracer] = []
    for backend, key, name, extra in (
        ("core", "sigtrace", "sigtrace", []),
        ("core", "sigtrace-syscalls", "sigtrace --syscalls", ["--syscalls"]),
        ("bcc", "sigtrace-bcc", "sigtrace --backend bcc", []),
        ("tracefs", "sigtrace-tracefs", "sigtrace --backend tracefs", []),
        ("ptrace", "sigtrace-ptrace", "sigtrace --backend ptrace", []),
    ):
        argv = [*st, "--backend", backend, "--format", "jsonl", *extra]
        if backend == "ptrace":
            argv += ["--pid", "{pid}"]
        why = missing
        if not why and has is not None and backend not in has:
            why = f"this sigtrace has no --backend {backend}"
        if not why and has is not None and any(f not in (text or "") for f in extra):
            why = f"this sigtrace has no {' '.join(extra)}"
        na: dict[str, str] = {}
        notes: dict[str, str] = {}
        if backend == "ptrace":
            na = {"all_lost": PTRACE_CANNOT_LOSE, "paced_lost": PTRACE_CANNOT_LOSE}
            notes = {"ready": PTRACE_READY, "all": PTRACE_ONE_PROCESS, "getppid": PTRACE_GETPPID}
        elif backend == "tracefs":
            notes = {
                "storm_lost": TRACEFS_LOST,
                "all_lost": TRACEFS_LOST,
                "paced_lost": TRACEFS_LOST,
            }
        out.append(
            SigtraceTracer(
                name=name,
                key=key,
                argv={
                    "ready": argv,
                    "default": [*argv, "--output", "{out}"],
                    "all": [*argv, "--signal", "all", "--output", "{out}"],
                },
                marker=b'"type":"start"',
                uses_output_flag=True,
                env=st_env,
                unavailable=why,
                records_per_kill=2,  # the signal (with its kill() call) and its delivery
                na=na,
                notes=notes,
            )
        )
    return out


def all_tracers(sigtrace_path: Path | None = None) -> list[Tracer]:
    """sigtrace_path: run `python -m sigtrace` from there; None: .venv/bin/sigtrace as is.
    The first is sigtrace's default backend, the reference."""
    out = sigtrace_tracers(sigtrace_path)
    out += [
        SigsnoopTracer(
            name="sigsnoop",
            argv={
                # Its stdout is block-buffered on a pipe: line-buffer it to see the header.
                "ready": ["stdbuf", "-oL", "sigsnoop"],
                "default": ["sigsnoop", "-s", "15"],  # one signal is the most it filters
                "all": ["sigsnoop"],
            },
            marker=b"TIME ",
            key="sigsnoop",
            marker_in_file=False,
            unavailable="" if shutil.which("sigsnoop") else "sigsnoop not installed",
        ),
    ]
    hdr = kernel_header_dirs()
    bt_env = {"BPFTRACE_KERNEL_SOURCE": hdr[0], "BPFTRACE_KERNEL_BUILD": hdr[1]} if hdr else {}
    bt_missing = "" if shutil.which("bpftrace") else "bpftrace not installed"
    out.append(
        BpftraceTracer(
            name="bpftrace",
            argv={
                "ready": ["bpftrace", "-e", bpftrace_program(DEFAULT_SIGNALS)],
                "default": ["bpftrace", "-e", bpftrace_program(DEFAULT_SIGNALS)],
                "all": ["bpftrace", "-e", bpftrace_program(None)],
            },
            marker=b"ready",
            key="bpftrace",
            env=bt_env,
            stop_signal=signal.SIGINT,
            unavailable=bt_missing or ("" if hdr else "no kernel headers"),
        )
    )
    bcc_env: dict[str, str] = {}
    cflags: list[str] = []
    if hdr:
        src, build = hdr
        if src != build:
            bcc_env["BCC_KERNEL_SOURCE"] = src
            for d in (
                "arch/x86/include/generated",
                "arch/x86/include/generated/uapi",
                "include/generated/uapi",
                "include",
            ):
                cflags.append(f"--cflag=-I{build}/{d}")
    bcc = [SYSTEM_PYTHON, str(HERE / "bcc_anchor.py"), *cflags]
    has_bcc = os.path.isdir("/usr/lib/python3/dist-packages/bcc")
    out.append(
        BccTracer(
            name="BCC (tracepoint)",
            argv={"ready": bcc, "default": bcc, "all": [*bcc, "--all"]},
            marker=b"ready",
            key="bcc",
            env=bcc_env,
            unavailable=("" if has_bcc else "python3-bpfcc not installed")
            or ("" if hdr else "no kernel headers"),
        )
    )
    return out
