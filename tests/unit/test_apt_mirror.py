"""packaging/apt_mirror.py: the image's base comes from the host's own apt sources."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SPEC = importlib.util.spec_from_file_location(
    "apt_mirror", Path(__file__).resolve().parents[2] / "packaging" / "apt_mirror.py"
)
assert SPEC and SPEC.loader
apt_mirror = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(apt_mirror)


def write(root: Path, name: str, text: str) -> None:
    (root / "sources.list.d").mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text)


def test_deb822_with_a_disabled_entry_and_comments(tmp_path: Path) -> None:
    write(
        tmp_path,
        "sources.list.d/debian.sources",
        "Types: deb\nURIs: http://mirror.internal/debian-off/\nSuites: bookworm\n"
        "Enabled: no\n\n"
        "Types: deb deb-src\n# a comment\nURIs: http://mirror.internal/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.internal/security\nSuites: bookworm-security\n",
    )
    assert apt_mirror.mirrors("bookworm", tmp_path) == (
        "http://mirror.internal/debian",
        "http://mirror.internal/security",
    )


def test_one_line_sources_with_options_and_no_security(tmp_path: Path) -> None:
    write(
        tmp_path,
        "sources.list",
        "# deb http://commented.out/debian bookworm main\n"
        "deb-src http://src.only/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://proxy:3142/debian bookworm main\n",
    )
    assert apt_mirror.mirrors("bookworm", tmp_path) == ("http://proxy:3142/debian", None)


def test_no_source_for_the_suite(tmp_path: Path) -> None:
    write(tmp_path, "sources.list", "deb http://x/ubuntu jammy main\n")
    assert apt_mirror.mirrors("bookworm", tmp_path) == (None, None)
