"""Where the lines go: a file descriptor (a file, a pipe, a terminal), written in whole lines,
and what a failed write means.

Lines are buffered and handed to write(2) together. A write can stop part-way (the disk
fills in the middle of it): on a regular file the cut line is taken back (ftruncate to the
end of the last whole line), so the file never ends in half a record; the lines not written
are dropped and counted, never left half-written for the next write to finish. A pipe or a
terminal cannot take bytes back, but there a write stops part-way only when the reader is gone.

What a failure does is the caller's choice: `sigtrace` stops (OutputError, exit 11; stdout's
reader gone is ReaderGone, exit 141, quiet); `sigtrace daemon` keeps going (`keep_going`):
it counts the lines it could not write and tries again with the next ones.
"""

from __future__ import annotations

import errno
import os
import select
import stat
from collections.abc import Callable

from sigtrace.errors import OutputError, ReaderGone, UsageError
from sigtrace.escape import printable

BUFFER_BYTES = 1 << 16


class LineSink:
    def __init__(self, fd: int, name: str, *, path: str | None = None, keep_going: bool = False):
        self.fd = fd
        self.name = name  # in messages: the path, or "stdout"
        self.path = path  # set when sigtrace opened it: it can be reopened (logrotate)
        self.keep_going = keep_going
        self.error: OSError | None = None  # the last write's failure, until one succeeds
        self.dropped = 0  # lines not written, in all
        self.unreported = 0  # lines not written since the last loss report (see written_now)
        self.on_drop: Callable[[int], None] = lambda n: None
        self.on_change: Callable[[OSError | None], None] = lambda err: None  # failing / works
        self._buf = bytearray()
        self._classify()

    @classmethod
    def open(cls, path: str, option: str, *, append: bool, keep_going: bool = False) -> LineSink:
        """Opens `path` for writing before tracing starts: a path that cannot be opened is bad
        input (exit 2), not a failure in the middle of a run."""
        fd = _open(path, append, option)
        return cls(fd, printable(path), path=path, keep_going=keep_going)

    def _classify(self) -> None:
        try:
            mode = os.fstat(self.fd).st_mode
        except OSError:
            mode = 0  # a closed stdout: the first write says so
        self._regular = stat.S_ISREG(mode)
        # A terminal gets each line at once; anything else, whole buffers.
        self._interactive = stat.S_ISCHR(mode) and os.isatty(self.fd)

    def isatty(self) -> bool:
        return self._interactive

    def write(self, text: str) -> int:
        """`text` is one or more whole lines."""
        return self.write_bytes(text.encode())

    def write_bytes(self, data: bytes) -> int:
        """`data` is one or more whole lines, encoded (orjson's output, as it is)."""
        self._buf += data
        if self._interactive or len(self._buf) >= BUFFER_BYTES:
            self.flush()
        return len(data)

    def flush(self) -> None:
        self._flush()

    def _flush(self) -> bool:
        """Whether the pending lines (if any) were written."""
        if not self._buf:
            return True
        data, self._buf = bytes(self._buf), bytearray()
        return self._put(data, counted=True)

    def written_now(self, line: str) -> bool:
        """Writes the pending lines, then `line`; whether `line` was written. A line that
        could not be written is not counted: the daemon's loss report, which a failing
        output would otherwise count as one more loss every time it tried."""
        return self._flush() and self._put(line.encode(), counted=False)

    def _put(self, data: bytes, counted: bool) -> bool:
        done = 0
        view = memoryview(data)
        try:
            while done < len(data):
                try:
                    n = os.write(self.fd, view[done:])
                except BlockingIOError:  # a non-blocking stdout (some CI runners): wait
                    select.select([], [self.fd], [])
                    continue
                if n == 0:
                    raise OSError(errno.EIO, os.strerror(errno.EIO))
                done += n
        except OSError as exc:
            whole = data.rfind(b"\n", 0, done) + 1
            if whole < done:
                self._take_back(done - whole)
            self._failed(exc, data.count(b"\n", whole) if counted else 0)
            return False
        if self.error is not None:
            self.error = None
            self.on_change(None)
        return True

    def _take_back(self, nbytes: int) -> None:
        """Cuts the half line a stopped write left at the end of a regular file."""
        if not self._regular:
            return
        try:
            end = os.lseek(self.fd, 0, os.SEEK_CUR)
            os.ftruncate(self.fd, end - nbytes)
            os.lseek(self.fd, end - nbytes, os.SEEK_SET)  # without O_APPEND: no hole after
        except OSError:
            pass

    def _failed(self, exc: OSError, lines: int) -> None:
        if lines:
            self.dropped += lines
            self.unreported += lines
            self.on_drop(lines)
        if not self.keep_going:
            if exc.errno == errno.EPIPE and self.path is None:
                raise ReaderGone() from None
            raise OutputError(f"writing to {self.name} failed: {exc.strerror or exc}") from None
        first = self.error is None
        self.error = exc
        if first:
            self.on_change(exc)

    def reopen(self) -> None:
        """After logrotate moved the file away: the same path again, appended to. Raises
        UsageError (the old descriptor is kept) when the path cannot be opened now."""
        if self.path is None:
            return
        self.flush()
        fd = _open(self.path, True, "--output")
        os.close(self.fd)
        self.fd = fd
        self._classify()

    def close(self) -> None:
        """Writes what is pending and closes a file sigtrace opened (never stdout)."""
        try:
            self.flush()
        finally:
            if self.path is not None:
                os.close(self.fd)


def _open(path: str, append: bool, option: str) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
    try:
        return os.open(path, flags, 0o644)
    except OSError as exc:
        raise UsageError(f"cannot open {option} {printable(path)}: {exc.strerror or exc}") from None


def stdout_sink(keep_going: bool = False) -> LineSink:
    return LineSink(1, "stdout", keep_going=keep_going)
