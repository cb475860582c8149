"""authresults.py: entries recorded by plugins, one field written, every value quoted by RFC 8601's rules."""

from __future__ import annotations

import pytest

from qpsmtpd_stdio.authresults import add_auth_result, quote, remove_forged
from qpsmtpd_stdio.headers import Headers


@pytest.mark.parametrize("value, expected", [
    ("example.org", "example.org"),
    ("@example.org", "@example.org"),
    ("user+tag@example.org", "user+tag@example.org"),
    ("x\\;", '"x\\\\;"'),
    ('a"b', '"a\\"b"'),
    ("a;b", '"a;b"'),
    ("a (b)", '"a (b)"'),
    ("a\r\nb\x00c", "abc"),
    ("d\u00e9j\u00e0", "dj"),
    ("", '""'),
    ("a@b@c", '"a@b@c"'),
])
def test_quote(value, expected):
    assert quote(value) == expected


def test_a_hostile_value_cannot_hide_the_next_verdict():
    notes: dict = {}
    add_auth_result(notes, f"dkim=fail header.d={quote('x' + chr(92) + ';')}")
    add_auth_result(notes, "dmarc=fail header.from=example.org")
    entries = split_entries(notes["authentication_results"])
    assert entries == ['dkim=fail header.d="x\\\\;"', "dmarc=fail header.from=example.org"]


def split_entries(text: str) -> list[str]:
    """RFC 8601's reading: `;` separates entries except inside a quoted-string (with its \\ escapes)."""
    entries, current, quoted, escaped = [], "", False, False
    for c in text:
        if escaped:
            escaped = False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == ";" and not quoted:
            entries.append(current.strip())
            current = ""
            continue
        current += c
    return entries + [current.strip()]


def test_forged_results_below_our_received_are_removed():
    h = Headers.parse(b"Authentication-Results: mx.example.test; spf=pass\r\n"
                      b"Received: from x\r\n"
                      b"Authentication-Results: mx.example.test; dkim=pass header.d=forged.example\r\n"
                      b"Authentication-Results: other.example; dkim=fail\r\n"
                      b"Subject: s")
    assert remove_forged(h, "mx.example.test") == 1
    assert h.get_all("Authentication-Results") == ["mx.example.test; spf=pass", "other.example; dkim=fail"]
    assert remove_forged(h, "mx.example.test") == 0
