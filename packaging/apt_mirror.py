#!/usr/bin/env python3
"""The host's own Debian mirrors, as its apt sources name them: `apt_mirror.py SUITE` prints
the archive URI for SUITE and the one for SUITE-security, space-separated.

build-image.sh debootstraps the image's base from them, so the image is built from wherever
this host gets its packages (a local mirror, a proxy, a snapshot) and names no host itself.
Reads one-line (sources.list) and deb822 (*.sources) files; disabled entries are skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

SOURCES = Path("/etc/apt")


def entries(root: Path = SOURCES) -> Iterator[tuple[str, list[str]]]:
    """(uri, suites) of every enabled `deb` source."""
    files = [root / "sources.list", *sorted((root / "sources.list.d").glob("*"))]
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.suffix == ".sources":
            yield from _deb822(text)
        elif f.name == "sources.list" or f.suffix == ".list":
            yield from _one_line(text)


def _one_line(text: str) -> Iterator[tuple[str, list[str]]]:
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 3 or words[0] != "deb":
            continue
        if words[1].startswith("["):  # [arch=amd64 signed-by=…]
            while words and not words[0].endswith("]"):
                words.pop(0)
            words.pop(0)
            words.insert(0, "deb")
        if len(words) >= 3:
            yield words[1], [words[2]]


def _deb822(text: str) -> Iterator[tuple[str, list[str]]]:
    for para in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in para.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            yield uri, fields.get("suites", "").split()


def mirrors(suite: str, root: Path = SOURCES) -> tuple[str | None, str | None]:
    archive = security = None
    for uri, suites in entries(root):
        if archive is None and suite in suites:
            archive = uri.rstrip("/")
        if security is None and f"{suite}-security" in suites:
            security = uri.rstrip("/")
    return archive, security


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: apt_mirror.py SUITE", file=sys.stderr)
        return 2
    archive, security = mirrors(argv[1])
    if archive is None:
        print(
            f"apt_mirror: no apt source for {argv[1]} in {SOURCES}: set DEBIAN_MIRROR",
            file=sys.stderr,
        )
        return 1
    print(archive, security or "")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
