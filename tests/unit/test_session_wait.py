"""How long the session's loop lets a backend wait: without a timeout when nothing is due
(an idle daemon never wakes), else until the nearest piece of work."""

from __future__ import annotations

from collections.abc import Callable

from sigtrace.backends import Backend, Emit
from sigtrace.config import TraceConfig
from sigtrace.session import POLL_MS, Session


class FakeBackend(Backend):
    """Hands over nothing; records the timeout of each poll, `rounds` of them."""

    name = "fake"

    def __init__(self, rounds: int, can_wake: bool = True) -> None:
        super().__init__(TraceConfig())
        self.rounds = rounds
        self.can_wake = can_wake
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
        return 0

    def lost_total(self) -> int:
        return 0

    def close(self) -> None:
        pass


class Lines:
    def write(self, rec: dict) -> None:
        pass

    def flush(self) -> None:
        pass


def run(backend: FakeBackend, setup: Callable[[Session], None] = lambda s: None) -> list[int]:
    session = Session(backend, Lines())
    setup(session)

    def count() -> None:
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
