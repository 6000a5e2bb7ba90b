"""Reading a BPF ring buffer through its memory mapping, without a C callback per record.

libbpf's ring_buffer__poll() calls back into Python for every record through a ctypes
trampoline, which costs about as much as decoding the record. Here the consumer walks the
mapped data itself (include/uapi/linux/bpf.h: BPF_RINGBUF_BUSY_BIT / _DISCARD_BIT, 8-byte
headers, 8-byte alignment). The kernel lets the data pages be mapped twice so that a record
that wraps reads as one slice; they are mapped once here and a wrapping record is joined from
its two pieces: the kernel inserts every mapped page at mmap() time, so the second mapping
would count the whole ring twice in the process's RSS (4 MB more at the default size) for
the rare record that wraps. Plain loads are enough only where stores are not reordered
(x86-64's TSO): on other architectures sigtrace keeps libbpf's consumer (sigtrace.libbpf's
RingBuffer).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import struct
import time
from collections.abc import Callable

BUSY = 1 << 31
DISCARD = 1 << 30
LENGTH = ~(BUSY | DISCARD) & 0xFFFFFFFF
HDR = 8
BATCH = 512  # records per batch: the per-batch work is paid for, the copies stay small
GATHER_S = 0.010  # the wait for records to gather while they flow (see MappedRing.poll)
GATHER_MIN = 2  # records in a poll that mean they flow (a lone record: no extra wakeup)
_POS = struct.Struct("=Q")
_LEN = struct.Struct("=I")


def supported() -> bool:
    return os.uname().machine == "x86_64" and os.environ.get("SIGTRACE_RINGBUF") != "libbpf"


def _one_by_one(on_record: Callable[[bytes], None]) -> Callable[[list[bytes]], None]:
    def on_batch(batch: list[bytes]) -> None:
        for data in batch:
            on_record(data)

    return on_batch


class MappedRing:
    """Records are taken out in batches: each batch is copied out of the mapping and its
    space handed back to the kernel at once, then handed over (`on_batch`, or `on_record`
    per record) — one Python call per batch, and the ring frees up before the records are
    handled. A batch, once taken, is handed over whole: stopping waits for the current one."""

    def __init__(
        self,
        map_fd: int,
        size: int,
        on_record: Callable[[bytes], None],
        should_stop: Callable[[], bool] = lambda: False,
        budget: int = 8192,
        on_batch: Callable[[list[bytes]], None] | None = None,
    ) -> None:
        page = mmap.PAGESIZE
        self.page = page
        self.mask = size - 1
        self.on_batch = on_batch or _one_by_one(on_record)
        self.should_stop = should_stop
        self.budget = budget
        prot_rw = mmap.PROT_READ | mmap.PROT_WRITE
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, prot_rw, offset=0)
        # producer position page, then the data (once: see the module's docstring)
        self._data = mmap.mmap(map_fd, page + size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._end = page + size
        self._ep = select.epoll()
        self._ep.register(map_fd, select.EPOLLIN)
        self._wake_fd = -1
        self._gather = False  # records are flowing: let the next ones gather before reading

    def wake_on(self, fd: int) -> None:
        """A non-blocking fd that also ends a wait (a signal's wakeup fd); read empty here."""
        self._wake_fd = fd
        self._ep.register(fd, select.EPOLLIN)

    def poll(self, timeout_ms: int) -> int:
        """Records handed over within timeout_ms (< 0: no limit) (at most `budget`).

        While records keep coming (the last poll emptied the ring of several), it first lets
        them gather for GATHER_S: a consumer that catches up with every record is woken by
        the kernel for every record (bpf_ringbuf_submit wakes a consumer that has caught up),
        and at tens of thousands of wakeups a second the kernel failed reservations with the
        ring all but empty (issue 12, kernel 6.18: 108-181 records lost per 400k at 40k/s,
        0-2 KB in the ring when they were; 13-37 with 2 ms of gathering, 19-26 with 10 ms).
        10 ms at 300k records/s is ~0.5 MB of the 4 MB ring.
        """
        if self._gather:
            time.sleep(GATHER_S)
        n = self.consume()
        self._gather = GATHER_MIN <= n < self.budget
        if n == 0 and not self.should_stop():
            events = self._ep.poll(None if timeout_ms < 0 else timeout_ms / 1000)
            if any(fd == self._wake_fd for fd, _ in events):
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_fd, 4096):
                        pass
            n = self.consume()
            self._gather = GATHER_MIN <= n < self.budget
        return n

    def consume(self) -> int:
        """Records already in the buffer (about `budget` at most), without waiting."""
        n = 0
        while n < self.budget:
            batch, moved = self._take(BATCH)
            if batch:
                n += len(batch)
                self.on_batch(batch)
            if not moved or self.should_stop():
                break
        return n

    def _take(self, most: int) -> tuple[list[bytes], bool]:
        """Up to `most` submitted records, copied out, their space handed back; and whether
        the consumer position moved (discarded records move it too)."""
        data, page, mask, end = self._data, self.page, self.mask, self._end
        start = cons = _POS.unpack_from(self._cons)[0]
        prod = _POS.unpack_from(data)[0]
        unpack = _LEN.unpack_from
        batch: list[bytes] = []
        take = batch.append
        while cons < prod and len(batch) < most:
            off = page + (cons & mask)
            hdr = unpack(data, off)[0]
            if hdr & BUSY:  # reserved, not yet submitted: the rest must wait
                break
            length = hdr & LENGTH
            cons += (length + HDR + 7) & ~7
            if not hdr & DISCARD:
                stop = off + HDR + length
                if stop <= end:
                    take(data[off + HDR : stop])
                else:  # wraps (the 8-byte header never does: the size is a multiple of 8)
                    take(data[off + HDR : end] + data[page : page + stop - end])
        if cons != start:
            _POS.pack_into(self._cons, 0, cons)
        return batch, cons != start

    def close(self) -> None:
        self._ep.close()
        self._data.close()
        self._cons.close()
