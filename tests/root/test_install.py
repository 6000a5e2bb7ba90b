"""Install like a Python tool: the sdist and wheel `python -m build` makes, the wheel installed
into a fresh venv (dependencies from the package index, nothing from this checkout), then
`sigtrace doctor` and a short real trace from that venv (the BPF object is package data)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.tracing import parse_lines

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]


def run(*cmd: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    # without PYTHONPATH (tests/conftest.py points it at this checkout): the venv's own copy
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert r.returncode == 0, f"{cmd} -> {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def test_wheel_installs_into_a_fresh_venv_and_traces(tmp_path: Path) -> None:
    pytest.importorskip("build", reason="python -m build (scripts/setup installs it)")
    src = tmp_path / "src"  # a copy: the build leaves no build/ or egg-info in the checkout
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "tests", "*.raw", "build"),
    )
    dist = tmp_path / "dist"
    # --no-isolation: setuptools from this environment, not a download per build
    run(sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "-o", dist, src)
    (wheel,) = dist.glob("sigtrace-*.whl")
    assert list(dist.glob("sigtrace-*.tar.gz"))
    names = zipfile.ZipFile(wheel).namelist()
    for data in ("sigtrace/data/sigtrace.bpf.o", "sigtrace/data/sigtrace.v1.schema.json"):
        assert data in names
    assert any(n.endswith("licenses/LICENSE") or n.endswith("/LICENSE") for n in names), names

    venv = tmp_path / "venv"
    run("/usr/bin/python3", "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "-q", "--disable-pip-version-check", wheel)
    sigtrace = venv / "bin" / "sigtrace"
    info = json.loads(run(sigtrace, "doctor", "--format", "jsonl", cwd=tmp_path))
    assert info["auto"]["backend"] == "core", info["auto"]
    out = run(sigtrace, "--format", "jsonl", "--duration", "1", "--signal", "USR1", cwd=tmp_path)
    records = parse_lines(out)
    assert [r["type"] for r in records][:: len(records) - 1] == ["start", "stop"]
    assert records[0]["backend"] == "core"
    # the installed copy, not this checkout's
    code = "import sigtrace; print(sigtrace.__file__)"
    where = run(venv / "bin" / "python", "-c", code, cwd=tmp_path)
    assert where.startswith(str(venv))
