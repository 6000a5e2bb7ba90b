"""Recorded streams: the kernel side's records exactly as the ring buffer handed them over,
so that decoding, classification and correlation replay without root or BPF.

Format: the line `sigtrace-raw 1 <abi> <clock offset ns>\\n`, then per record a native-endian
u32 length and the record's bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from types import TracebackType
from typing import BinaryIO, Protocol

from sigtrace import wire
from sigtrace.errors import OutputError, UsageError
from sigtrace.escape import printable

MAGIC = b"sigtrace-raw"
_LEN = struct.Struct("=I")


class ByteStream(Protocol):
    def write(self, data: bytes, /) -> object: ...
    def flush(self) -> None: ...


class RawFile:
    """--save-raw's file: opened before tracing starts (a path that cannot be opened is bad
    input, exit 2); a write that fails ends the run like a failed --output (exit 11)."""

    def __init__(self, f: BinaryIO, name: str) -> None:
        self.f = f
        self.name = name

    @classmethod
    def open(cls, path: str) -> RawFile:
        try:
            return cls(open(path, "wb"), printable(path))
        except OSError as exc:
            raise UsageError(
                f"cannot open --save-raw {printable(path)}: {exc.strerror or exc}"
            ) from None

    def _failed(self, exc: OSError) -> OutputError:
        return OutputError(f"writing to {self.name} failed: {exc.strerror or exc}")

    def write(self, data: bytes) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            raise self._failed(exc) from None

    def flush(self) -> None:
        try:
            self.f.flush()
        except OSError as exc:
            raise self._failed(exc) from None

    def __enter__(self) -> RawFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.f.close()
        except OSError as err:
            if kind is None:  # else the error that ended the run is the one to report
                raise self._failed(err) from None


class RawWriter:
    def __init__(self, stream: ByteStream, clock_offset_ns: int) -> None:
        self.stream = stream
        stream.write(b"%s 1 %d %d\n" % (MAGIC, wire.ABI_VERSION, clock_offset_ns))

    def write(self, data: bytes) -> None:
        self.stream.write(_LEN.pack(len(data)) + data)

    def flush(self) -> None:
        self.stream.flush()


class Records:
    """The records of a recording, in order. `cut` says, once iterated, whether the file ended
    inside a record (a tracer killed mid-write): the whole records before it are kept."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.count = 0
        self.cut: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        while True:
            n = self.stream.read(_LEN.size)
            if not n:
                return
            if len(n) < _LEN.size:
                self.cut = f"{len(n)} of a length's {_LEN.size} bytes"
                return
            (size,) = _LEN.unpack(n)
            data = self.stream.read(size)
            if len(data) < size:
                self.cut = f"{len(data)} of a record's {size} bytes"
                return
            self.count += 1
            yield data


def read(stream: BinaryIO) -> tuple[int, Records]:
    """(clock offset ns, the records). Raises ValueError on a file that is not a recording."""
    head = stream.readline(256).split()
    if (
        len(head) != 4
        or head[0] != MAGIC
        or head[1] != b"1"
        or not all(f.isdigit() for f in head[2:])
    ):
        raise ValueError("not a sigtrace raw recording")
    if int(head[2]) != wire.ABI_VERSION:
        raise ValueError(
            f"recording has record ABI {int(head[2])}, this sigtrace reads {wire.ABI_VERSION}"
        )
    return int(head[3]), Records(stream)
