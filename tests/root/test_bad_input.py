"""The bad-input catalogue: one command each, its exact exit code and its one stderr line.

Every case runs the real CLI as root (or as nobody, where that is the point) with every
container runtime pointed at a path this test owns, so no case depends on what runs on the
host. Fake Docker daemons (a socket that never answers, one that answers garbage, one that
answers HTTP 500) are served from this process. argv cannot carry a NUL byte (execve ends
each argument at the first one), so the "NUL" case is the nearest argv allows: other control
bytes, a newline and ESC sequences, which must come out escaped, never raw.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sigtrace import wire
from sigtrace.errors import ReaderGone, SigtraceError
from tests.root.helpers import NOBODY
from tests.tracing import REPO, sigtrace_cmd

STREAMS = REPO / "tests/data/streams"
CASE_TIMEOUT_S = 20  # a hang is a failure, not a stuck suite
CID = "c0ffee" * 10 + "abcd"  # a well-formed 64-hex container id
ESC = "\x1b"


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    code: int
    line: str  # regex for the whole stderr line after "sigtrace: "
    env: dict[str, str] = field(default_factory=dict)
    nobody: bool = False
    max_s: float = 10.0  # how long it may take (a timeout must stay a timeout, not a hang)


def C(id: str, *args: str, code: int, line: str, **kw) -> Case:
    return Case(id, args, code, line, **kw)


NOT_INT = r"Invalid value for '--pid': {!r} is not a valid integer\."
SIGNAL_HINT = r" \(try TERM, SIGKILL, 15, RTMIN\+2 or all\)"
NAME_RULE = r": not a {} \(letters, digits, '_', '\.', '-'; a letter or digit first\)"
NO_RUNTIME = (
    r"no container runtime found here \(docker: no {w}/none.sock and no {w}/none/containers; "
    r"containerd: no {w}/none; cri-o: no {w}/none; podman: no {w}/none\)"
)
DOCKER_DOWN = r"cannot list containers: {}; and {{w}}/none/containers is not readable"

CASES = [
    # --signal
    C("signal-unknown-name", "--signal", "TERM,NOPE", code=2,
      line=r"unknown signal: 'NOPE'" + SIGNAL_HINT),
    C("signal-zero", "--signal", "0", code=2, line=r"signal number out of range 1-64: '0'"),
    C("signal-65", "--signal", "65", code=2, line=r"signal number out of range 1-64: '65'"),
    C("signal-negative", "--signal", "-9", code=2, line=r"unknown signal: '-9'" + SIGNAL_HINT),
    C("signal-rtmin-out-of-range", "--signal", "RTMIN+31", code=2,
      line=r"real-time signal out of range: 'RTMIN\+31'"),
    C("signal-rtmax-huge", "--signal", "RTMAX-99999999999999999999", code=2,
      line=r"real-time signal out of range: 'RTMAX-99999999999999999999'"),
    C("signal-unicode-digit", "--signal", "²", code=2,
      line=r"unknown signal: '²'" + SIGNAL_HINT),
    C("signal-empty", "--signal", "", code=2,
      line=r"--signal '' names no signal \(try TERM, 15, RTMIN\+2 or all\)"),
    C("signal-only-commas", "--signal", ",,", code=2,
      line=r"--signal ',,' names no signal \(try TERM, 15, RTMIN\+2 or all\)"),
    C("signal-escape-sequence", "--signal", f"{ESC}[31mTERM", code=2,
      line=r"unknown signal: '\\x1b\[31mTERM'" + SIGNAL_HINT),
    # --pid
    C("pid-zero", "--pid", "0", code=2, line=r"--pid takes a positive process id, not 0"),
    C("pid-negative", "--pid", "-1", code=2, line=r"--pid takes a positive process id, not -1"),
    C("pid-not-a-number", "--pid", "abc", code=2, line=NOT_INT.format("abc")),
    C("pid-beyond-pid-max", "--pid", "4194304", code=2,
      line=r"--pid 4194304: beyond the largest process id Linux has \(4194303\)"),
    C("pid-huge", "--pid", "99999999999999999999", code=2,
      line=r"--pid 99999999999999999999: beyond the largest process id Linux has \(4194303\)"),
    C("pid-not-running-ptrace", "--backend", "ptrace", "--pid", "4194303", code=2,
      line=r"--pid 4194303: no such process"),
    # --duration, --buffer-size, --format, --backend, unknown options
    C("duration-zero", "--duration", "0", code=2,
      line=r"Invalid value for '--duration': '0' is not a positive, finite number of seconds\."),
    C("duration-nan", "--duration", "nan", code=2,
      line=r"Invalid value for '--duration': 'nan' is not a positive, finite number of seconds\."),
    C("duration-inf", "--duration", "inf", code=2,
      line=r"Invalid value for '--duration': 'inf' is not a positive, finite number of seconds\."),
    C("duration-text", "--duration", "soon", code=2,
      line=r"Invalid value for '--duration': 'soon' is not a number of seconds\."),
    C("buffer-size-too-small", "--buffer-size", "1", code=2,
      line=r"--buffer-size: '1' is outside 4K\.\.1G"),
    C("buffer-size-too-big", "--buffer-size", "2G", code=2,
      line=r"--buffer-size: '2G' is outside 4K\.\.1G"),
    C("buffer-size-garbage", "--buffer-size", "lots", code=2,
      line=r"--buffer-size: 'lots' is not a size like 4M, 512K or 65536"),
    C("buffer-size-from-environment", code=2, env={"SIGTRACE_BUFFER_SIZE": "-4M"},
      line=r"--buffer-size: '-4M' is not a size like 4M, 512K or 65536"),
    C("format-unknown", "--format", "xml", code=2,
      line=r"Invalid value for '--format': 'xml' is not one of 'text', 'jsonl'\."),
    C("backend-unknown", "--backend", "ebpf", code=2,
      line=r"Invalid value for '--backend': 'ebpf' is not one of 'auto', 'core', 'bcc', "
      r"'tracefs', 'ptrace'\."),
    # output: a path that cannot be opened is bad input; a write that fails is exit 11
    C("output-missing-dir", "-o", "/nonexistent/dir/x.jsonl", code=2,
      line=r"cannot open --output /nonexistent/dir/x\.jsonl: No such file or directory"),
    C("save-raw-missing-dir", "--save-raw", "/nonexistent/x.raw", code=2,
      line=r"cannot open --save-raw /nonexistent/x\.raw: No such file or directory"),
    C("output-disk-full", "--backend", "core", "-o", "/dev/full", code=11,
      line=r"writing to /dev/full failed: No space left on device"),
    C("ptrace-without-targets", "--backend", "ptrace", code=2,
      line=r"the ptrace backend traces given processes only: add --pid, --container or --pod"),
    C("option-unknown", "--sginal", "TERM", code=2,
      line=r"No such option '--sginal'\. Did you mean '--signal'\?"),
    C("subcommand-unknown", "trace", code=2, line=r"No such command 'trace'\."),
    # --container / --pod names
    C("container-empty", "--container", "", code=2,
      line=r"--container '': empty container name or id"),
    C("container-too-long", "--container", "a" * 256, code=2,
      line=r"--container: container name or id of 256 characters \(at most 255\)"),
    C("container-slash", "--container", "web/1", code=2,
      line=r"--container 'web/1'" + NAME_RULE.format("container name or id")),
    C("container-newline", "--container", "web\nsigtrace: fake line", code=2,
      line=r"--container 'web\\nsigtrace: fake line'" + NAME_RULE.format("container name or id")),
    C("container-escape", "--container", f"{ESC}[2J{ESC}]0;owned\a", code=2,
      line=r"--container '\\x1b\[2J\\x1b\]0;owned\\x07'"
      + NAME_RULE.format("container name or id")),
    C("container-control-bytes", "--container", "web\x01\x7f", code=2,
      line=r"--container 'web\\x01\\x7f'" + NAME_RULE.format("container name or id")),
    C("container-with-wait-still-checked", "--container", "a/b", "--wait", code=2,
      line=r"--container 'a/b'" + NAME_RULE.format("container name or id")),
    C("pod-empty", "--pod", "", code=2, line=r"--pod '': empty pod name"),
    C("pod-empty-namespace", "--pod", "/web", code=2, line=r"--pod '/web': empty namespace"),
    C("pod-two-slashes", "--pod", "a/b/c", code=2,
      line=r"--pod 'a/b/c'" + NAME_RULE.format("namespace")),
    C("pod-namespace-too-long", "--pod", "n" * 64 + "/web", code=2,
      line=r"--pod: namespace of 64 characters \(at most 63\)"),
    C("pod-escape", "--pod", f"shop/{ESC}[31mweb", code=2,
      line=r"--pod 'shop/\\x1b\[31mweb'" + NAME_RULE.format("pod name")),
    C("explain-container-newline", "explain", "-c", "a\nb", code=2,
      line=r"--container 'a\\nb'" + NAME_RULE.format("container name or id")),
    C("explain-nothing-named", "explain", code=2, line=r"explain needs --container or --pod"),
    # Container runtimes: none here, one that hangs, garbage, HTTP 500, a file, bad state
    C("container-no-runtime-at-all", "--container", "web", code=7,
      line=r"no container 'web'; " + NO_RUNTIME),
    C("pod-no-runtime-at-all", "--pod", "shop/web", code=7,
      line=r"no pod 'web' in namespace 'shop'; " + NO_RUNTIME),
    C("docker-socket-never-answers", "--container", "web", code=8, max_s=6,
      env={"SIGTRACE_DOCKER_SOCKET": "{w}/hang.sock"},
      line=DOCKER_DOWN.format(r"docker socket {w}/hang.sock: no answer \(timed out\)")),
    C("docker-socket-answers-garbage", "--container", "web", code=8,
      env={"SIGTRACE_DOCKER_SOCKET": "{w}/garbage.sock"},
      line=DOCKER_DOWN.format(r"docker socket {w}/garbage.sock: BadStatusLine")),
    C("docker-socket-answers-500", "--container", "web", code=8,
      env={"SIGTRACE_DOCKER_SOCKET": "{w}/500.sock"},
      line=DOCKER_DOWN.format(r"docker API answered HTTP 500 for /containers/json\?all=1")),
    C("docker-socket-is-a-regular-file", "--container", "web", code=8,
      env={"SIGTRACE_DOCKER_SOCKET": "{w}/file.sock"},
      line=DOCKER_DOWN.format(r"docker socket {w}/file.sock: connection refused")),
    C("docker-hangs-explain", "explain", "-c", "web", code=8, max_s=6,
      env={"SIGTRACE_DOCKER_SOCKET": "{w}/hang.sock"},
      line=DOCKER_DOWN.format(r"docker socket {w}/hang.sock: no answer \(timed out\)")),
    C("containerd-state-malformed", "--container", "web", code=7,
      env={"SIGTRACE_CONTAINERD_STATE": "{w}/containerd"},
      line=r"no container 'web'; no containers at all \(containerd answered\)"),
    C("crio-config-unreadable", "--pod", "shop/web", code=7, nobody=True,
      env={"SIGTRACE_CRIO_ROOT": "{w}/crio"},
      line=r"no pod 'web' in namespace 'shop'; no containers at all \(cri-o answered\)"),
    C("crio-root-unreadable", "--container", "web", code=8, nobody=True,
      env={"SIGTRACE_CRIO_ROOT": "{w}/crio-closed"},
      line=r"cannot list containers: cri-o: {w}/crio-closed: Permission denied "
      r"\(the host's /run not mounted\?\)"),
    # Recordings (sigtrace replay)
    C("replay-empty", "replay", "{w}/empty.raw", code=2,
      line=r"{w}/empty.raw: not a sigtrace raw recording"),
    C("replay-random-bytes", "replay", "{w}/random.raw", code=2,
      line=r"{w}/random.raw: not a sigtrace raw recording"),
    C("replay-newer-abi", "replay", "{w}/newer.raw", code=2,
      line=rf"{{w}}/newer.raw: recording has record ABI 99, "
      rf"this sigtrace reads {wire.ABI_VERSION}"),
    C("replay-bad-header", "replay", "{w}/badhead.raw", code=2,
      line=r"{w}/badhead.raw: not a sigtrace raw recording"),
    C("replay-garbage-record", "replay", "{w}/badrecord.raw", code=2,
      line=r"{w}/badrecord.raw: .+"),
    C("replay-truncated", "replay", "{w}/truncated.raw", code=0,
      line=r"{w}/truncated.raw: cut short after \d+ records \(the last one incomplete: "
      r"\d+ of a record's \d+ bytes\)"),
    C("replay-missing-file", "replay", "{w}/none.raw", code=2,
      line=r"Invalid value for 'RECORDING': File '{w}/none.raw' does not exist\."),
    C("replay-directory", "replay", "{w}/empty", code=2,
      line=r"Invalid value for 'RECORDING': File '{w}/empty' is a directory\."),
    # --proc-root / --sys-root, kernel features, libraries
    C("proc-root-missing", "--proc-root", "{w}/none", code=2,
      line=r"--proc-root '{w}/none': no such directory"),
    C("proc-root-empty", "--proc-root", "{w}/empty", code=2,
      line=r"--proc-root '{w}/empty': not a proc filesystem"),
    C("proc-root-from-environment", "daemon", code=2, env={"SIGTRACE_PROC_ROOT": "{w}/empty"},
      line=r"--proc-root '{w}/empty': not a proc filesystem"),
    C("explain-proc-root-empty", "explain", "-c", "web", "--proc-root", "{w}/empty", code=2,
      line=r"--proc-root '{w}/empty': not a proc filesystem"),
    C("sys-root-missing", "--sys-root", "{w}/none", code=2,
      line=r"--sys-root '{w}/none': no such directory"),
    C("sys-root-empty-no-btf", "--backend", "core", "--sys-root", "{w}/empty", code=4,
      line=r"kernel has no BTF \({w}/empty/kernel/btf/vmlinux missing\): "
      r"CO-RE needs CONFIG_DEBUG_INFO_BTF"),
    C("sys-root-empty-no-tracefs", "--backend", "tracefs", "--sys-root", "{w}/empty", code=4,
      line=r"no tracefs under {w}/empty/kernel/tracing"),
    C("sys-root-empty-auto", "--sys-root", "{w}/empty", code=4,
      line=r"no backend can run here: core \(btf: kernel has no BTF .*\); bcc \(tracefs: .*\); "
      r"tracefs \(tracefs: .*\); ptrace \(targets: needs --pid, --container or --pod\)"),
    C("bpf-denied", "--backend", "core", code=4, env={"SIGTRACE_DENY_BPF": "1"},
      line=r"bpf\(\) refused \(SIGTRACE_DENY_BPF is set\)"),
    C("ptrace-a-kernel-thread", "--backend", "ptrace", "--pid", "2", code=6,
      line=r"cannot trace pid 2: Operation not permitted"),
    C("libbpf-missing", "--backend", "core", code=5,
      env={"SIGTRACE_LIBBPF": "{w}/none/libbpf.so.1"}, line=r".*libbpf.*"),
    # Privileges
    C("unprivileged-user", "--signal", "TERM", code=3, nobody=True,
      line=r"no backend can run here: core \(privileges: missing CAP_BPF and CAP_PERFMON "
      r"\(needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN\): run with sudo\); .*"),
    C("unprivileged-daemon", "daemon", code=3, nobody=True,
      line=r"no backend can run here: core \(privileges: missing CAP_BPF and CAP_PERFMON .*"),
    C("unprivileged-ptrace", "--backend", "ptrace", "--pid", "1", code=3, nobody=True,
      line=r"missing CAP_SYS_PTRACE"),
]  # fmt: skip


# --- the world the cases point at ----------------------------------------------------------


def _serve(path: Path, answer: bytes | None, stop: threading.Event) -> threading.Thread:
    """A unix socket that reads a request and answers `answer` (None: never answers)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(16)
    srv.settimeout(0.2)
    held: list[socket.socket] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            if answer is None:
                held.append(conn)  # accepted, never answered
                continue
            with contextlib.suppress(OSError):
                conn.settimeout(2)
                conn.recv(65536)
                conn.sendall(answer)
            conn.close()
        for c in held:
            c.close()
        srv.close()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def _recording(name: str) -> bytes:
    return (STREAMS / name).read_bytes()


@pytest.fixture(scope="module")
def world() -> Iterator[Path]:
    # Not under pytest's own temporary directory, which nobody cannot enter.
    w = Path(tempfile.mkdtemp(prefix="st-bad-inputs-", dir="/tmp"))
    w.chmod(0o755)
    (w / "empty").mkdir()
    (w / "file.sock").write_text("not a socket\n")
    # containerd: a bundle whose config.json is not JSON, one that is a FIFO (must not
    # block), one that is a directory.
    for cid, kind in (("broken", "text"), ("fifo", "fifo"), ("dir", "dir")):
        bundle = w / "containerd/k8s.io" / cid
        bundle.mkdir(parents=True)
        (bundle / "init.pid").write_text("1\n")
        if kind == "text":
            (bundle / "config.json").write_text('{"annotations": {"io.kubernetes.cri.')
        elif kind == "fifo":
            os.mkfifo(bundle / "config.json")
        else:
            (bundle / "config.json").mkdir()
    # CRI-O: a container whose config.json nobody may read, and a root nobody may not list.
    userdata = w / "crio" / CID / "userdata"
    userdata.mkdir(parents=True)
    (userdata / "config.json").write_text('{"annotations": {}}')
    (userdata / "config.json").chmod(0)
    for d in (w / "crio", w / "crio" / CID, userdata):
        d.chmod(0o755)
    (w / "crio-closed").mkdir(mode=0o700)
    # Recordings.
    good = _recording("pid1.raw")
    head_end = good.index(b"\n") + 1
    (w / "empty.raw").write_bytes(b"")
    (w / "random.raw").write_bytes(bytes(range(256)) * 8)
    (w / "newer.raw").write_bytes(b"sigtrace-raw 1 99 0\n" + good[head_end:])
    (w / "badhead.raw").write_bytes(b"sigtrace-raw 1 two 0\n")
    (w / "badrecord.raw").write_bytes(good[:head_end] + b"\x08\x00\x00\x00" + b"\xff" * 8)
    (w / "truncated.raw").write_bytes(good[: len(good) - 7])
    stop = threading.Event()
    http_500 = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
    servers = [
        _serve(w / "hang.sock", None, stop),
        _serve(w / "garbage.sock", b"\x00\xffSSH-2.0-nonsense\r\n\r\n", stop),
        _serve(w / "500.sock", http_500, stop),
    ]
    yield w
    stop.set()
    for t in servers:
        t.join(2)
    shutil.rmtree(w)


def _fill(text: str, w: Path) -> str:
    return text.replace("{w}", str(w))


def run_case(case: Case, w: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    # Every runtime points at a path of ours: absent unless the case says otherwise.
    env = {
        **os.environ,
        "SIGTRACE_DOCKER_SOCKET": f"{w}/none.sock",
        "SIGTRACE_DOCKER_ROOT": f"{w}/none",
        "SIGTRACE_CONTAINERD_STATE": f"{w}/none",
        "SIGTRACE_CRIO_ROOT": f"{w}/none",
        "SIGTRACE_PODMAN_ROOT": f"{w}/none",
        "SIGTRACE_PODMAN_RUNROOT": f"{w}/none",
        **{k: _fill(v, w) for k, v in case.env.items()},
    }
    env.pop("SIGTRACE_DEBUG", None)
    prefix = NOBODY if case.nobody else ()
    start = time.monotonic()
    r = subprocess.run(
        [*prefix, *sigtrace_cmd(*(_fill(a, w) for a in case.args))],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=CASE_TIMEOUT_S,
        check=False,
        cwd="/",  # nobody can read it; the checkout's source comes through PYTHONPATH
        env=env,
    )
    return r, time.monotonic() - start


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, world: Path) -> None:
    r, took = run_case(case, world)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, f"stderr is not one line: {r.stderr!r}"
    want = "sigtrace: " + _fill(case.line, world)
    assert re.fullmatch(want, lines[0]), f"{lines[0]!r}\n does not match\n{want!r}"
    assert r.returncode == case.code, f"exit {r.returncode}, want {case.code}: {lines[0]}"
    for out in r.stdout.splitlines():  # nothing but records
        assert isinstance(json.loads(out), dict), out
    if case.code != 0:
        assert r.stdout == "", "an error must not start the output"
    assert took < case.max_s, f"took {took:.1f} s"


def test_catalogue_is_big_and_covers_every_exit_code() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    # ReaderGone (141, `| head`) is quiet by design: tests/root/test_output_failures.py has it
    codes = {cls.code for cls in _subclasses(SigtraceError) if cls is not ReaderGone} - {1}
    assert codes <= {c.code for c in CASES}, "an error class with no case"


def test_readme_documents_every_exit_code() -> None:
    from sigtrace.cli import INTERNAL_ERROR
    from sigtrace.commands.explain import EXIT_NOT_GRACEFUL
    from sigtrace.predict import EXIT_UNSURE

    readme = (REPO / "README.md").read_text()
    table = readme.split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.M)}
    used = {0, INTERNAL_ERROR, EXIT_NOT_GRACEFUL, EXIT_UNSURE} | {
        c.code for c in _subclasses(SigtraceError)
    }
    assert used <= documented, f"undocumented: {sorted(used - documented)}"


def _subclasses(cls: type) -> set[type]:
    out = set(cls.__subclasses__())
    for sub in list(out):
        out |= _subclasses(sub)
    return out
