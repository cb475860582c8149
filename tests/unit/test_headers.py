"""headers.py: the header block parsed without `email`, kept byte for byte, and bounded."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from qpsmtpd_stdio.headers import HeaderLimit, Headers, clean, split_header_block

BLOCK = b"From: a@example.org\r\nSubject: one\r\n two\r\nX-Caf\xc3\xa9: \xc3\xa9t\xc3\xa9\r\nsubject: again"


def test_fields_are_read_unfolded_and_case_insensitively():
    h = Headers.parse(BLOCK)
    assert len(h) == 4 and h.names() == ["From", "Subject", "X-Café", "subject"]
    assert h.get("SUBJECT") == "one two"
    assert h.get_all("subject") == ["one two", "again"]
    assert h.count("Subject") == 2 and h.get("Missing") is None
    assert list(h)[2] == ("X-Café", "été")


def test_untouched_header_goes_out_byte_for_byte():
    assert Headers.parse(BLOCK).as_bytes() == BLOCK + b"\r\n\r\n"
    assert Headers.parse(BLOCK).as_bytes(b"\n") == BLOCK.replace(b"\r\n", b"\n") + b"\n\n"


def test_added_values_cannot_inject_a_field():
    h = Headers()
    h.add("X-Evil", "a\r\nBcc: victim@example.org\x00")
    h.add("Bad:Name\n", "v")
    h.add_folded("Received-SPF", ["pass (x)", "client-ip=1.2.3.4;\r\nX: y"], prepend=True)
    out = h.as_bytes()
    assert out.count(b"\r\n") == 5  # three fields, one of them folded once, then the empty line
    assert b"\r\nBcc" not in out and b"\x00" not in out
    assert h.names() == ["Received-SPF", "X-Evil", "BadName"]
    assert h.get("X-Evil") == "a  Bcc: victim@example.org"


def test_delete_and_replace():
    h = Headers.parse(BLOCK)
    assert h.delete("subject") == 2
    h.replace("From", "b@example.org")
    assert h.names() == ["X-Café", "From"] and h.get("from") == "b@example.org"


def test_clean():
    assert clean(" a\tb\r\nc\x7f ") == "a b  c"
    assert clean("plain") == "plain"


@pytest.mark.parametrize("message, block, body_at", [
    (b"A: 1\r\nB: 2\r\n\r\nbody", b"A: 1\r\nB: 2", 14),
    (b"A: 1\r\n folded\r\n\r\n", b"A: 1\r\n folded", 17),
    (b"A: 1\r\nnot a field\r\n", b"A: 1", 6),           # no empty line: the body starts at the first non-field
    (b"\r\nbody", b"", 2),                              # no header at all
    (b"A: 1\r\nB: 2", b"A: 1", 6),                      # an unfinished last line is body
    (b" leading fold\r\n\r\n", b"", 0),                 # a fold with nothing to continue is not a field
])
def test_split_header_block(message, block, body_at):
    assert split_header_block(message, 1000, 100) == (block, body_at)


def test_limits():
    with pytest.raises(HeaderLimit):
        split_header_block(b"A: 1\r\n" * 11 + b"\r\n", 1000, 10)
    with pytest.raises(HeaderLimit):
        split_header_block(b"A: " + b"x" * 2000 + b"\r\n\r\n", 1000, 10)


@given(st.lists(st.tuples(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,10}", fullmatch=True),
                          st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=30)),
                max_size=10))
def test_parse_gives_back_what_was_added(fields):
    h = Headers()
    for name, value in fields:
        h.add(name, value)
    again = Headers.parse(h.as_bytes()[:-4]) if fields else Headers()
    assert list(again) == [(name, clean(value)) for name, value in fields]


def test_delete_one_instance_by_position():
    def fresh():
        return Headers.parse(b"X-A: 1\r\nX-B: b\r\nx-a: 2\r\nX-A: 3")

    h = fresh()
    assert h.delete("X-A", 2) == 1 and h.get_all("X-A") == ["1", "3"]
    h = fresh()
    assert h.delete("X-A", -1) == 1 and h.get_all("X-A") == ["1", "2"]
    h = fresh()
    assert h.delete("X-A", 4) == 0 and h.delete("X-A", -4) == 0 and len(h) == 4
    assert h.delete("X-A") == 3 and h.names() == ["X-B"]
