"""Reading a BPF ring buffer through its memory mapping, without a C callback per record.

libbpf's ring_buffer__poll() calls back into Python for every record through a ctypes
trampoline, which costs about as much as decoding the record. Here the consumer walks the
mapped data itself (include/uapi/linux/bpf.h: BPF_RINGBUF_BUSY_BIT / _DISCARD_BIT, 8-byte
headers, 8-byte alignment; the data pages are mapped twice, so a record that wraps reads as
one slice). Plain loads are enough only where stores are not reordered (x86-64's TSO): on
other architectures sigtrace keeps libbpf's consumer (sigtrace.libbpf.RingBuffer).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import struct
from collections.abc import Callable

BUSY = 1 << 31
DISCARD = 1 << 30
HDR = 8
_POS = struct.Struct("=Q")
_LEN = struct.Struct("=I")


def supported() -> bool:
    return os.uname().machine == "x86_64" and os.environ.get("SIGTRACE_RINGBUF") != "libbpf"


class MappedRing:
    def __init__(
        self,
        map_fd: int,
        size: int,
        on_record: Callable[[bytes], None],
        should_stop: Callable[[], bool] = lambda: False,
        budget: int = 8192,
    ) -> None:
        page = mmap.PAGESIZE
        self.page = page
        self.mask = size - 1
        self.on_record = on_record
        self.should_stop = should_stop
        self.budget = budget
        prot_rw = mmap.PROT_READ | mmap.PROT_WRITE
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, prot_rw, offset=0)
        # producer position page, then the data mapped twice
        self._data = mmap.mmap(
            map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
        )
        self._ep = select.epoll()
        self._ep.register(map_fd, select.EPOLLIN)
        self._wake_fd = -1

    def wake_on(self, fd: int) -> None:
        """A non-blocking fd that also ends a wait (a signal's wakeup fd); read empty here."""
        self._wake_fd = fd
        self._ep.register(fd, select.EPOLLIN)

    def poll(self, timeout_ms: int) -> int:
        """Records handed over within timeout_ms (< 0: no limit) (at most `budget`)."""
        n = self.consume()
        if n == 0 and not self.should_stop():
            events = self._ep.poll(None if timeout_ms < 0 else timeout_ms / 1000)
            if any(fd == self._wake_fd for fd, _ in events):
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_fd, 4096):
                        pass
            n = self.consume()
        return n

    def consume(self) -> int:
        """Records already in the buffer (at most `budget`), without waiting."""
        data, page, mask = self._data, self.page, self.mask
        cons = _POS.unpack_from(self._cons)[0]
        n = 0
        try:
            while True:
                prod = _POS.unpack_from(data)[0]
                if cons >= prod:
                    break
                while cons < prod:
                    off = page + (cons & mask)
                    hdr = _LEN.unpack_from(data, off)[0]
                    if hdr & BUSY:  # reserved, not yet submitted: the rest must wait
                        return n
                    length = hdr & ~(BUSY | DISCARD)
                    cons += (length + HDR + 7) & ~7
                    if not hdr & DISCARD:
                        self.on_record(data[off + HDR : off + HDR + length])
                        n += 1
                        if n >= self.budget or self.should_stop():
                            return n
        finally:
            _POS.pack_into(self._cons, 0, cons)
        return n

    def close(self) -> None:
        self._ep.close()
        self._data.close()
        self._cons.close()
