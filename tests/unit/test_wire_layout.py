"""The Python mirror of bpf/sigtrace.h matches the compiled object's BTF, name for name,
offset for offset. Reads the BTF with the system libbpf, through sigtrace/libbpf.py (no root,
no BPF)."""

from __future__ import annotations

import struct

import pytest

from sigtrace import wire
from sigtrace.backends.core import object_path
from sigtrace.libbpf import Libbpf, find_library


@pytest.fixture(scope="module")
def libbpf() -> Libbpf:
    if find_library() is None:
        pytest.fail("libbpf is not installed (scripts/setup installs libbpf1)")
    return Libbpf()


def btf_struct(libbpf: Libbpf, name: str) -> tuple[int, list[tuple[str, int, int]]]:
    """(size, [(member, byte offset, byte size)]) of a struct in the object's BTF."""
    layout = libbpf.struct_layout(object_path(), name)
    assert layout is not None, f"struct {name} is not in the object's BTF"
    return layout


def python_members(layout: tuple) -> list[tuple[str, int, int]]:
    out, off = [], 0
    for name, fmt in layout:
        size = struct.calcsize("=" + (wire.flat_format(fmt) if isinstance(fmt, tuple) else fmt))
        out.append((name, off, size))
        off += size
    return out


@pytest.mark.parametrize("name", sorted(wire.LAYOUTS))
def test_layout_matches_btf(libbpf: Libbpf, name: str) -> None:
    size, members = btf_struct(libbpf, name)
    assert python_members(wire.LAYOUTS[name]) == members
    assert wire.struct_of(name).size == size
