"""Errors as root on the real machine: one line on stderr, each with its own exit code.

Kernel and library gaps are simulated through sigtrace's own settings (`--sys-root`,
SIGTRACE_SYS_ROOT, SIGTRACE_LIBBPF), and lost privileges with setpriv.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.root.helpers import NOBODY
from tests.tracing import run_sigtrace as run


def assert_one_line_error(r: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, f"stderr is not one line: {r.stderr!r}"
    assert lines[0].startswith("sigtrace: "), lines[0]
    assert words in lines[0], lines[0]
    assert r.returncode == code, f"exit {r.returncode}, want {code}: {lines[0]}"
    assert r.stdout == "", "an error must not start the output"


@pytest.fixture
def empty_sys() -> Iterator[str]:
    """An empty directory as /sys, under a neutral path (see the next test for why)."""
    with tempfile.TemporaryDirectory(prefix="st-sys-", dir="/tmp") as d:
        assert "root" not in d
        yield d


def test_unknown_signal_name_is_a_usage_error() -> None:
    assert_one_line_error(run("--signal", "TERM,NOPE"), 2, "unknown signal")


def test_pid_zero_is_a_usage_error() -> None:
    assert_one_line_error(run("--pid", "0"), 2, "positive process id")


def test_non_root_is_a_privilege_error() -> None:
    r = run("--signal", "TERM", "--duration", "1", prefix=NOBODY)
    assert_one_line_error(r, 3, "root")


def test_kernel_without_btf_via_sys_root_option(empty_sys: str) -> None:
    assert_one_line_error(run("--sys-root", empty_sys, "--duration", "1"), 4, "BTF")


def test_kernel_without_btf_via_environment(empty_sys: str) -> None:
    r = run("--duration", "1", env={"SIGTRACE_SYS_ROOT": empty_sys})
    assert_one_line_error(r, 4, "BTF")


def test_kernel_without_btf_under_a_path_that_names_root(tmp_path: Path) -> None:
    sys_root = tmp_path / "root-sys"
    sys_root.mkdir()
    assert_one_line_error(run("--sys-root", str(sys_root), "--duration", "1"), 4, "BTF")


def test_missing_libbpf_is_a_library_error() -> None:
    r = run(
        "--backend", "core", "--duration", "1", env={"SIGTRACE_LIBBPF": "/nonexistent/libbpf.so"}
    )
    assert_one_line_error(r, 5, "libbpf")


def test_missing_kernel_headers_for_bcc_is_a_missing_package() -> None:
    # BCC_KERNEL_SOURCE is BCC's own setting: pointed at nothing, BCC has no headers to use.
    r = run("--backend", "bcc", "--duration", "1", env={"BCC_KERNEL_SOURCE": "/nonexistent"})
    assert_one_line_error(r, 5, "BCC_KERNEL_SOURCE=/nonexistent has no include/linux/kconfig.h")


def test_doctor_names_the_core_backend() -> None:
    r = run("doctor")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "backend core: ok" in r.stdout
    assert "auto: core" in r.stdout
    info = json.loads(run("doctor", "--format", "jsonl").stdout)
    assert info["auto"]["backend"] == "core"
    assert all(c["ok"] for c in info["backends"]["core"])


def test_doctor_without_any_backend_exits_with_the_reason(empty_sys: str) -> None:
    """The report, then the exit code `sigtrace` itself would give: 4, no BTF or tracefs."""
    r = run("doctor", "--sys-root", empty_sys)
    assert r.returncode == 4, r.stderr
    assert "auto: none: no backend can run here: core (btf: kernel has no BTF" in r.stdout
    (line,) = r.stderr.splitlines()
    assert line.startswith("sigtrace: no backend can run here: core (btf: kernel has no BTF")
    r = run("doctor", "--format", "jsonl", "--sys-root", empty_sys)
    assert r.returncode == 4
    assert json.loads(r.stdout)["auto"]["exit_code"] == 4


def test_doctor_as_nobody_exits_3() -> None:
    r = run("doctor", prefix=NOBODY)
    assert r.returncode == 3, r.stderr
    assert "backend core: unavailable" in r.stdout
    (line,) = r.stderr.splitlines()
    assert line.startswith("sigtrace: no backend can run here: core (privileges: missing CAP_BPF")


def test_doctor_exits_0_while_one_backend_can_run() -> None:
    r = run("doctor", env={"SIGTRACE_DENY_BPF": "1"})  # core and bcc refused, tracefs left
    assert (r.returncode, r.stderr) == (0, "")
    assert "backend core: unavailable" in r.stdout and "auto: tracefs" in r.stdout


@pytest.mark.parametrize("args", [["--help"], ["doctor", "--help"]], ids=["group", "doctor"])
def test_help(args: list[str]) -> None:
    r = run(*args)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("Usage: sigtrace") and "Examples:" in r.stdout
