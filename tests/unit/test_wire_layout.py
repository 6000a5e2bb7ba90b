"""The Python mirror of bpf/sigtrace.h matches the compiled object's BTF, name for name,
offset for offset. Reads the BTF with the system libbpf (no root, no BPF)."""

from __future__ import annotations

import ctypes
import struct

import pytest

from sigtrace import wire
from sigtrace.backends.core import object_path
from sigtrace.libbpf import find_library

BTF_KIND_STRUCT = 4


class BtfType(ctypes.Structure):
    _fields_ = (("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32), ("size", ctypes.c_uint32))


class BtfMember(ctypes.Structure):
    _fields_ = (
        ("name_off", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("offset", ctypes.c_uint32),
    )


@pytest.fixture(scope="module")
def btf():
    name = find_library()
    if name is None:
        pytest.fail("libbpf is not installed (scripts/setup installs libbpf1)")
    lib = ctypes.CDLL(name)
    lib.btf__parse.restype = ctypes.c_void_p
    lib.btf__parse.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    lib.btf__find_by_name_kind.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32]
    lib.btf__type_by_id.restype = ctypes.POINTER(BtfType)
    lib.btf__type_by_id.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.btf__name_by_offset.restype = ctypes.c_char_p
    lib.btf__name_by_offset.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.btf__resolve_size.restype = ctypes.c_long
    lib.btf__resolve_size.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.btf__free.argtypes = [ctypes.c_void_p]
    handle = lib.btf__parse(object_path().encode(), None)
    assert handle, "cannot parse the BTF of the compiled object"
    yield lib, handle
    lib.btf__free(handle)


def btf_struct(btf, name: str) -> tuple[int, list[tuple[str, int, int]]]:
    """(size, [(member, byte offset, byte size)]) of a struct in the object's BTF."""
    lib, h = btf
    tid = lib.btf__find_by_name_kind(h, name.encode(), BTF_KIND_STRUCT)
    assert tid > 0, f"struct {name} is not in the object's BTF"
    t = lib.btf__type_by_id(h, tid).contents
    members = ctypes.cast(ctypes.addressof(t) + ctypes.sizeof(BtfType), ctypes.POINTER(BtfMember))
    out = []
    for i in range(t.info & 0xFFFF):
        m = members[i]
        out.append(
            (
                lib.btf__name_by_offset(h, m.name_off).decode(),
                m.offset // 8,
                lib.btf__resolve_size(h, m.type),
            )
        )
    return t.size, out


def python_members(layout: tuple) -> list[tuple[str, int, int]]:
    out, off = [], 0
    for name, fmt in layout:
        size = struct.calcsize("=" + (wire.flat_format(fmt) if isinstance(fmt, tuple) else fmt))
        out.append((name, off, size))
        off += size
    return out


@pytest.mark.parametrize("name", sorted(wire.LAYOUTS))
def test_layout_matches_btf(btf, name: str) -> None:
    size, members = btf_struct(btf, name)
    assert python_members(wire.LAYOUTS[name]) == members
    assert wire.struct_of(name).size == size
