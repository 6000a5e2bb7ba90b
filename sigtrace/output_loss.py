"""`sigtrace daemon` when its output fails: it goes on tracing, and once writing works again
it says how many records it could not write, in a `lost` record with `reason: "output"`.

The report is also the probe: while the output fails and nothing else is pending, trying to
write the report (at most once a second) is how the daemon finds out that it works again.
A report that cannot be written is not itself counted as lost; the next one carries the count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sigtrace.output.sink import LineSink
from sigtrace.session import Session

REPORT_EVERY_S = 1.0


class OutputLossReport:
    def __init__(
        self, session: Session, sink: LineSink, encode: Callable[[dict[str, Any]], str]
    ) -> None:
        self.session = session
        self.sink = sink
        self.encode = encode
        session.tickers.append((REPORT_EVERY_S, self.report, self.due))
        session.on_finish.append(self.report)  # before the stop record

    def due(self) -> float | None:
        """Now while records went unwritten, else never: no wakeup for it."""
        return 0.0 if self.sink.unreported else None

    def report(self) -> None:
        count = self.sink.unreported
        if count == 0:
            return
        rec = self.session.correlator.lost(count, time.monotonic_ns(), reason="output")
        if self.sink.written_now(self.encode(self.session.stamped(rec))):
            self.sink.unreported -= count
            self.session.account(rec)
