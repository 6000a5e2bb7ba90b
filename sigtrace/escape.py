"""Text from traced processes (comm, cmdline) is untrusted: make it safe to print. Pure.

Bytes that are not UTF-8 were already turned into `\\xNN` text when decoded (wire.comm_text,
procfs); here every non-printable character (controls, ESC, DEL, C1, bidi overrides) becomes
`\\xNN` or `\\uNNNN`, so a terminal shows what the process had and runs nothing.
"""

from __future__ import annotations


def printable(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    n = ord(ch)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"
