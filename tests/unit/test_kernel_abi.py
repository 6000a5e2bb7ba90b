"""One kernel ABI: bpf/sigtrace.h's record kinds, syscall numbers, enums and flags are the
values wire.py uses, and the BCC program (which includes that header) adds only flags of its
own, above the shared bits. Every struct of both C sources is laid out as its Python mirror
says (wire.LAYOUTS, bcc_records.BT_LAYOUTS), member by member. Parses the C text: no compiler.
(test_wire_layout.py checks the compiled object's BTF as well.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sigtrace import wire
from sigtrace.backends import bcc_records

ROOT = Path(__file__).parents[2]
HEADER = ROOT / "bpf" / "sigtrace.h"
BCC_PROGRAM = ROOT / "sigtrace" / "backends" / "bcc_program.c"

_ENUM = re.compile(r"enum\s+(\w+)\s*\{(.*?)\};", re.S)
_ENUMERATOR = re.compile(r"\b(\w+)\s*=\s*(\d+)")
_DEFINE = re.compile(r"^#define\s+(\w+)\s+\(?(\d+)u?(?:\s*<<\s*(\d+))?\)?", re.M)
_STRUCT = re.compile(r"^struct\s+(\w+)\s*\{(.*?)^\};", re.S | re.M)
_MEMBER = re.compile(r"^\s*(struct\s+\w+|\w+)\s+(\w+)(?:\[(\w+)\])?;", re.M)
_C_FORMAT = {"u64": "Q", "s64": "q", "u32": "I", "s32": "i"}  # __u64 etc. too


def c_constants(text: str) -> dict[str, int]:
    """Every enumerator and every integer #define (`N`, `(1u << N)`) of a C source."""
    out = {}
    for _, body in _ENUM.findall(text):
        out |= {name: int(v) for name, v in _ENUMERATOR.findall(re.sub(r"/\*.*?\*/", "", body))}
    for name, base, shift in _DEFINE.findall(text):
        out[name] = int(base) << int(shift or 0)
    return out


def c_structs(text: str, constants: dict[str, int]) -> dict[str, tuple]:
    """struct name → ((member, struct format or nested layout), ...), as wire.LAYOUTS has it."""
    out: dict[str, tuple] = {}
    for name, body in _STRUCT.findall(re.sub(r"/\*.*?\*/", "", text, flags=re.S)):
        members = []
        for ctype, member, length in _MEMBER.findall(body):
            if ctype.startswith("struct "):
                fmt: object = out[ctype.split()[1]]
            elif ctype == "char":
                fmt = f"{constants.get(length) or int(length)}s"
            else:
                fmt = _C_FORMAT[ctype.removeprefix("__")]
            members.append((member, fmt))
        out[name] = tuple(members)
    return out


HEADER_CONSTANTS = c_constants(HEADER.read_text())
BCC_CONSTANTS = c_constants(BCC_PROGRAM.read_text())
# The header's prefix → wire.py's, for each family of values.
FAMILIES = {"ST_KIND_": "KIND_", "ST_SYS_": "SYS_", "ST_INFO_": "INFO_", "ST_HANDLER_": "HANDLER_"}
FAMILIES["ST_F_"] = "F_"


@pytest.mark.parametrize("c_prefix", sorted(FAMILIES))
def test_every_value_of_the_header_is_wires_and_back(c_prefix: str) -> None:
    py_prefix = FAMILIES[c_prefix]
    in_c = {
        name.removeprefix(c_prefix): value
        for name, value in HEADER_CONSTANTS.items()
        if name.startswith(c_prefix)
    }
    in_py = {
        name.removeprefix(py_prefix): value
        for name, value in vars(wire).items()
        if name.startswith(py_prefix) and isinstance(value, int)
    }
    assert in_c and in_c == in_py


def test_abi_version_and_comm_length() -> None:
    assert HEADER_CONSTANTS["ST_ABI_VERSION"] == wire.ABI_VERSION
    assert f"{HEADER_CONSTANTS['ST_COMM_LEN']}s" == dict(wire.TASK)["comm"]


def test_syscall_names_are_the_headers_numbers() -> None:
    named = {f"ST_SYS_{n.upper()}": nr for nr, n in wire.SYSCALL_NAMES.items()}
    assert named == {k: v for k, v in HEADER_CONSTANTS.items() if k.startswith("ST_SYS_")}


def test_the_bcc_program_uses_the_headers_values_and_only_adds_its_own_flags() -> None:
    text = BCC_PROGRAM.read_text()
    assert '#include "sigtrace.h"' in text
    # No second copy of a kind, a syscall number or a shared flag.
    assert not re.search(r"#define\s+(ST_|BT_KIND|KIND_|SYS_|BT_SYS)", text)
    own = {k: v for k, v in BCC_CONSTANTS.items() if k.startswith("BT_F_")}
    assert own == {k: v for k, v in vars(bcc_records).items() if k.startswith("BT_F_")}
    shared = [v for k, v in HEADER_CONSTANTS.items() if k.startswith("ST_F_")]
    for name, bit in own.items():
        assert bit & (bit - 1) == 0 and all(bit != s for s in shared), name
        assert bit > max(shared), f"{name} inside the shared flags"
    track = {k: v for k, v in BCC_CONSTANTS.items() if k.startswith("TRACK_")}
    assert track == {k: v for k, v in vars(bcc_records).items() if k.startswith("TRACK_")}


@pytest.mark.parametrize("header", ["sigtrace.h", "sigtrace_rules.h"])
def test_the_packaged_headers_are_the_bpf_ones(header: str) -> None:
    packaged = ROOT / "sigtrace" / "backends" / header  # what BCC compiles with
    assert packaged.read_bytes() == (ROOT / "bpf" / header).read_bytes()


@pytest.mark.parametrize("name", sorted(wire.LAYOUTS))
def test_header_structs_are_wires_layouts(name: str) -> None:
    assert c_structs(HEADER.read_text(), HEADER_CONSTANTS)[name] == wire.LAYOUTS[name]


@pytest.mark.parametrize("name", sorted(bcc_records.BT_LAYOUTS))
def test_bcc_program_structs_are_bt_layouts(name: str) -> None:
    constants = HEADER_CONSTANTS | BCC_CONSTANTS
    text = HEADER.read_text() + BCC_PROGRAM.read_text()  # its records start with st_header
    assert c_structs(text, constants)[name] == bcc_records.BT_LAYOUTS[name]
