"""digits.py: every number from outside is read the same way."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from qpsmtpd_stdio.digits import number


@pytest.mark.parametrize("text, expected", [
    ("0", 0), ("42", 42), (b"65535", 65535), ("007", 7),
    ("", None), (None, None), ("-1", None), ("+1", None), (" 1", None), ("1_000", None), ("1.0", None),
    ("\u00b2", None), ("\u0663", None), ("\u2460", None), ("\uff11", None), ("1" * 21, None),
])
def test_number(text, expected):
    assert number(text) == expected


def test_bounds():
    assert number("65535", 65535) == 65535 and number("65536", 65535) is None
    assert number("12345", digits=4) is None


@given(st.text(max_size=30))
def test_never_raises_and_only_ascii_digits(text):
    value = number(text)
    assert value is None or (text.isascii() and text.isdigit() and value == int(text))
