"""How long the session's loop lets a backend wait: without a timeout when nothing is due
(an idle daemon never wakes), else until the nearest piece of work."""

from __future__ import annotations

import time
from collections.abc import Callable

from sigtrace.backends import Backend, Emit
from sigtrace.config import TraceConfig
from sigtrace.session import POLL_MS, Session


class FakeBackend(Backend):
    """Hands over nothing; records the timeout of each poll, `rounds` of them."""

    name = "fake"

    def __init__(self, rounds: int, can_wake: bool = True, trickle_s: float = 0.0) -> None:
        super().__init__(TraceConfig())
        self.rounds = rounds
        self.can_wake = can_wake
        self.trickle_s = trickle_s  # > 0: a record at every poll, this far apart
        self.timeouts: list[int] = []
        self.on_poll: Callable[[], None] = lambda: None

    @classmethod
    def probe(cls, config: TraceConfig) -> list[tuple[str, bool, str]]:
        return []

    def open(self) -> None:
        pass

    def wake_on(self, fd: int) -> bool:
        return self.can_wake

    def poll(self, timeout_ms: int, emit: Emit) -> int:
        self.timeouts.append(timeout_ms)
        self.on_poll()
        if self.trickle_s:
            time.sleep(self.trickle_s)
            return 1
        return 0

    def lost_total(self) -> int:
        return 0

    def close(self) -> None:
        pass


class Lines:
    def __init__(self) -> None:
        self.events: list[str] = []

    def write(self, rec: dict) -> None:
        self.events.append(rec["type"])

    def flush(self) -> None:
        self.events.append("flush")


def run(
    backend: FakeBackend,
    setup: Callable[[Session], None] = lambda s: None,
    lines: Lines | None = None,
) -> list[int]:
    session = Session(backend, lines or Lines())
    setup(session)

    def count() -> None:
        if lines is not None:
            lines.events.append(f"poll {backend.timeouts[-1]}")
        if len(backend.timeouts) >= backend.rounds:
            session.stop()

    backend.on_poll = count
    session.run()
    return backend.timeouts


def test_idle_waits_without_a_timeout() -> None:
    assert run(FakeBackend(3)) == [-1, -1, -1]


def test_a_backend_that_cannot_be_woken_is_polled() -> None:
    assert run(FakeBackend(2, can_wake=False)) == [POLL_MS, POLL_MS]


def test_a_ticker_with_nothing_due_never_wakes_it() -> None:
    ran: list[int] = []
    ticker = (0.25, lambda: ran.append(1), lambda: None)
    assert run(FakeBackend(2), lambda s: s.tickers.append(ticker)) == [-1, -1]
    assert ran == []


def test_a_ticker_with_work_wakes_it_when_due() -> None:
    ran: list[int] = []
    ticker = (0.25, lambda: ran.append(1), lambda: 1.5)
    assert run(FakeBackend(2), lambda s: s.tickers.append(ticker)) == [1500, 1500]
    assert ran == []


def test_a_periodic_ticker_runs_at_once_then_every_interval() -> None:
    ran: list[int] = []
    timeouts = run(FakeBackend(2), lambda s: s.tickers.append((0.5, lambda: ran.append(1))))
    assert timeouts[0] == 0 and 400 < timeouts[1] <= 500
    assert ran == [1]


def test_a_deferred_task_is_run_without_waiting() -> None:
    done: list[int] = []

    def setup(s: Session) -> None:
        s.defer(lambda: done.append(1))

    assert run(FakeBackend(2), setup) == [0, -1]
    assert done == [1]


def test_what_a_ticker_writes_is_flushed_before_a_long_wait() -> None:
    """A verdict comes from a ticker, with no record after it: it must not wait for one."""
    lines, told = Lines(), []

    def setup(s: Session) -> None:
        def tell() -> None:
            told.append(1)
            s.emit_extra({"type": "verdict"})

        s.tickers.append((0.25, tell, lambda: None if told else 0.0))

    run(FakeBackend(2), setup, lines)
    assert lines.events[:2] == ["start", "flush"]
    assert lines.events[2:] == ["poll 0", "verdict", "flush", "poll -1", "flush", "stop", "flush"]


def test_records_that_never_pause_are_still_flushed_every_poll_interval() -> None:
    """A drain's trickle (a record every 20 ms) must not hold the output back until it ends."""
    lines = Lines()
    run(FakeBackend(25, trickle_s=0.02), lines=lines)  # 0.5 s
    polls = [e for e in lines.events if e.startswith("poll") or e == "flush"]
    flushes = polls[1:-2].count("flush")  # not the start record's, nor the end's
    assert 3 <= flushes <= 6, polls
