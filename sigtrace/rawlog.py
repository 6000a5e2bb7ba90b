"""Recorded streams: the kernel side's records exactly as the ring buffer handed them over,
so that decoding, classification and correlation replay without root or BPF.

Format: the line `sigtrace-raw 1 <abi> <clock offset ns>\\n`, then per record a native-endian
u32 length and the record's bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

from sigtrace import wire

MAGIC = b"sigtrace-raw"
_LEN = struct.Struct("=I")


class RawWriter:
    def __init__(self, stream: BinaryIO, clock_offset_ns: int) -> None:
        self.stream = stream
        stream.write(b"%s 1 %d %d\n" % (MAGIC, wire.ABI_VERSION, clock_offset_ns))

    def write(self, data: bytes) -> None:
        self.stream.write(_LEN.pack(len(data)) + data)

    def flush(self) -> None:
        self.stream.flush()


def read(stream: BinaryIO) -> tuple[int, Iterator[bytes]]:
    """(clock offset ns, the records). Raises ValueError on a file that is not a recording."""
    head = stream.readline().split()
    if len(head) != 4 or head[0] != MAGIC or head[1] != b"1":
        raise ValueError("not a sigtrace raw recording")
    if int(head[2]) != wire.ABI_VERSION:
        raise ValueError(
            f"recording has record ABI {int(head[2])}, this sigtrace reads {wire.ABI_VERSION}"
        )

    def records() -> Iterator[bytes]:
        while True:
            n = stream.read(_LEN.size)
            if len(n) < _LEN.size:
                return
            (size,) = _LEN.unpack(n)
            data = stream.read(size)
            if len(data) < size:
                return  # a recording cut short (the tracer was killed): keep what is whole
            yield data

    return int(head[3]), records()
