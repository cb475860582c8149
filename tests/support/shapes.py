"""Messages of hostile shapes, as sent (dot-stuffed, without the final dot), and the reply each must get.

Used by tests/e2e/test_message_shapes.py (memory stays flat) and by the
benchmark (their CPU against an ordinary message of the same size).
"""

from __future__ import annotations


HEAD = b"From: <a@example.org>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: s\r\n\r\n"


def shapes(size: int) -> dict[str, tuple[bytes, int]]:
    """name: (message, reply code at its end), each about `size` octets."""
    return {
        "dot-lines": (HEAD + b"..\r\n" * (size // 4), 250),
        "double-dot-lines": (HEAD + b"...\r\n" * (size // 5), 250),
        "one-octet-lines": (HEAD + b"x\r\n" * (size // 3), 250),
        "999-octet-lines": (HEAD + (b"y" * 997 + b"\r\n") * (size // 999), 250),
        "bare-cr-run": (HEAD + b"\r" * size + b"\r\n", 554),
        "million-header-lines": (b"X: y\r\n" * (size // 10) + b"\r\nbody\r\n", 552),
    }
