"""What every bench says about its run and how it ends: which sigtrace it measured, the
host's numbers (JSON and the closing lines), and the signals that end it (Ctrl-C once: clean
up; the cleanup itself is not cut short)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from tracers import HERE, REPO, installed_copy


def which_sigtrace(installed: bool, ref: str | None) -> str:
    def git(*args: str) -> str:
        r = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
        return r.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = (
        " + uncommitted changes" if git("status", "--porcelain", "--", "sigtrace", "bpf") else ""
    )
    copy = installed_copy()
    if installed:
        return f".venv/bin/sigtrace as installed ({copy or 'this working tree'})"
    if ref is not None:
        return f"commit {git('rev-parse', '--short', ref)} ({ref}) of {REPO}, python -m sigtrace"
    what = f"working tree {REPO} at {head}{dirty} (a copy taken at start, python -m sigtrace)"
    if copy:
        what += (
            f"; NOTE .venv/bin/sigtrace imports a separate, non-editable copy from {copy}"
            " (compare with --installed)"
        )
    return what


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP end the bench through its cleanup, as SIGINT does (also when it
    was started in the background, where a shell leaves SIGINT ignored)."""

    def on_term(*_: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def hold_signals() -> None:
    """From here on the cleanup runs: a second Ctrl-C must not cut it."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def run_info(what: str, took: float, opts: argparse.Namespace) -> dict[str, Any]:
    """The head of a bench's --json file."""
    return {
        "sigtrace": what,
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "seconds": took,
        "options": {k: v for k, v in vars(opts).items() if k != "json"},
    }


def closing_lines(what: str, took: float, load_before: float) -> list[str]:
    return [
        f"\nsigtrace measured: {what}",
        f"Ran {took:.0f} s on {os.cpu_count()} CPUs, kernel {os.uname().release}; "
        f"load average before {load_before:.2f}"
        + (" (other work was running: numbers are noisy)" if load_before > 0.5 else ""),
    ]


def build_storm(dest: Path) -> Path:
    """tests/bench/storm.c built into dest (the storm every throughput bench runs)."""
    binary = dest / "storm"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(HERE / "storm.c")], check=True)
    return binary
