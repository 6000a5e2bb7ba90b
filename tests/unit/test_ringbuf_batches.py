"""MappedRing's walk over a ring buffer's data pages, on a fake mapping laid out as the kernel
lays it out (include/uapi/linux/bpf.h: 8-byte headers, BUSY and DISCARD bits, 8-byte steps)."""

from __future__ import annotations

import struct

from sigtrace import ringbuf

PAGE = 4096
SIZE = 1 << 16


def ring(
    records: list[tuple[bytes, int]], budget: int = 8192, at: int = 0
) -> tuple[ringbuf.MappedRing, list]:
    """A MappedRing over (payload, header bits) records written from ring position `at` on
    (the data pages mapped once, as MappedRing maps them); and the batches it hands over."""
    body = bytearray()
    for payload, bits in records:
        body += struct.pack("=II", len(payload) | bits, 0) + payload
        body += b"\0" * (-len(body) % 8)
    data = bytearray(PAGE + SIZE)
    struct.pack_into("=Q", data, 0, at + len(body))  # the producer's position
    for i, byte in enumerate(body):
        data[PAGE + (at + i) % SIZE] = byte
    got: list[list[bytes]] = []
    r = ringbuf.MappedRing.__new__(ringbuf.MappedRing)
    r.page, r.mask, r.budget, r._end = PAGE, SIZE - 1, budget, PAGE + SIZE
    r.on_batch, r.should_stop = got.append, lambda: False
    r._data, r._cons = bytes(data), bytearray(struct.pack("=Q", at))
    return r, got


def consumer_pos(r: ringbuf.MappedRing) -> int:
    return struct.unpack_from("=Q", r._cons)[0]


def test_batches_skip_discarded_records_and_stop_at_one_not_yet_submitted() -> None:
    r, got = ring([(b"one", 0), (b"gone", ringbuf.DISCARD), (b"two22", 0), (b"busy", ringbuf.BUSY)])
    assert r.consume() == 2
    assert got == [[b"one", b"two22"]]
    assert consumer_pos(r) == 3 * 16  # up to the busy one, which the kernel still writes
    assert r.consume() == 0 and got == [[b"one", b"two22"]]


def test_a_record_that_wraps_around_the_end_is_joined_from_its_two_pieces() -> None:
    payload = bytes(range(40))
    # headers at SIZE - 16 (a whole record before the end), then at SIZE - 8: its header is the
    # ring's last 8 bytes, its payload all past the end; then one that starts inside the data
    r, got = ring([(b"12345678", 0), (payload, 0), (b"after", 0)], at=SIZE - 24)
    assert r.consume() == 3
    assert got == [[b"12345678", payload, b"after"]]
    r, got = ring([(payload, 0)], at=SIZE - 24)  # 16 payload bytes before the end, 24 after
    assert r.consume() == 1 and got == [[payload]]


def test_a_flood_is_taken_in_batches_up_to_the_budget() -> None:
    n = 3 * ringbuf.BATCH
    r, got = ring([(b"%07d" % i, 0) for i in range(n)], budget=ringbuf.BATCH + 1)
    assert r.consume() == 2 * ringbuf.BATCH  # a batch started is a batch taken whole
    assert [len(b) for b in got] == [ringbuf.BATCH, ringbuf.BATCH]
    assert got[1][0] == b"%07d" % ringbuf.BATCH
    assert r.consume() == ringbuf.BATCH  # the rest, at the next poll
    assert consumer_pos(r) == n * 16


class _NoEpoll:
    def poll(self, timeout: float | None) -> list:
        return []


def test_while_records_flow_the_next_poll_lets_them_gather_first(monkeypatch) -> None:
    """A consumer that keeps catching up is woken by the kernel for every record; a few
    records at a poll mean more are coming: the next poll waits GATHER_S before reading."""
    slept: list[float] = []
    monkeypatch.setattr(ringbuf.time, "sleep", slept.append)
    r, _ = ring([(b"one", 0), (b"two", 0)])
    r._ep, r._wake_fd, r._gather = _NoEpoll(), -1, False
    assert r.poll(0) == 2 and slept == []
    assert r.poll(0) == 0 and slept == [ringbuf.GATHER_S]
    assert r.poll(0) == 0 and slept == [ringbuf.GATHER_S]  # nothing came: no more waiting
    lone, _ = ring([(b"one", 0)])
    lone._ep, lone._wake_fd, lone._gather = _NoEpoll(), -1, False
    assert lone.poll(0) == 1 and lone.poll(0) == 0
    assert slept == [ringbuf.GATHER_S]  # a lone record: no extra wakeup for an idle daemon
