"""An output file that can be reopened (logrotate moves it away, then sends SIGHUP)."""

from __future__ import annotations


class ReopeningFile:
    def __init__(self, path: str) -> None:
        self.path = path
        self._f = open(path, "a", buffering=1 << 16)  # noqa: SIM115 - closed in close()/reopen()

    def write(self, text: str) -> int:
        return self._f.write(text)

    def flush(self) -> None:
        self._f.flush()

    def isatty(self) -> bool:
        return False

    def reopen(self) -> None:
        self._f.flush()
        self._f.close()
        self._f = open(self.path, "a", buffering=1 << 16)  # noqa: SIM115

    def close(self) -> None:
        self._f.close()
