"""milter.py, the codec: packets as plain bytes, and the reader fed at every split of a reply stream."""

import struct

import pytest
from hypothesis import given, strategies as st

from qpsmtpd_stdio import milter


def test_packets():
    assert milter.optneg_packet() == struct.pack(">IcIII", 13, b"O", 6, milter.ALL_ACTIONS, milter.MTA_PROTOCOL)
    assert milter.connect_packet("mail.example", "192.0.2.1", 25) == (
        struct.pack(">I", 1 + 13 + 1 + 2 + 10) + b"Cmail.example\0" + b"4" + b"\x00\x19" + b"192.0.2.1\0")
    assert milter.connect_packet("h", "2001:db8::1", 1)[5:8] == b"h\x006"
    assert milter.connect_packet("unknown", "", 0) == struct.pack(">I", 10) + b"Cunknown\0U"
    assert milter.mail_packet("<a@b>", "SIZE=10") == struct.pack(">I", 15) + b"M<a@b>\0SIZE=10\0"
    assert milter.macro_packet(milter.RCPT, {"{rcpt_addr}": "x@y"}) == struct.pack(">I", 18) + b"DR{rcpt_addr}\0x@y\0"
    assert milter.header_packet("Subject", b"hi\n\tthere") == struct.pack(">I", 19) + b"LSubject\0hi\n\tthere\0"
    assert milter.mail_packet("<a\0b>") == struct.pack(">I", 4) + b"M<a\0"  # a NUL ends the string, as C reads it
    assert [len(p) for p in milter.body_packets(b"x" * 70000)] == [5 + 65535, 5 + 4465]


REPLIES = (milter.packet(b"O", struct.pack(">III", 6, 0x1FF, 0)) + milter.packet(b"h", b"X-A\0one\0")
           + milter.packet(b"i", struct.pack(">I", 0) + b"DKIM-Signature\0 v=1;\n\tb=x\0")
           + milter.packet(b"m", struct.pack(">I", 2) + b"Subject\0\0") + milter.packet(b"+", b"<c@d>\0")
           + milter.packet(b"e", b"<s@d>\0SIZE=1\0") + milter.packet(b"y", b"550 5.7.1 no\0") + milter.packet(b"p")
           + milter.packet(b"b", b"body") + milter.packet(b"c"))
EXPECTED = [(b"O", (6, 0x1FF, 0)), (b"h", (0, b"X-A", b"one")), (b"i", (0, b"DKIM-Signature", b" v=1;\n\tb=x")),
            (b"m", (2, b"Subject", b"")), (b"+", (b"<c@d>",)), (b"e", (b"<s@d>", b"SIZE=1")),
            (b"y", (b"550 5.7.1 no",)), (b"p", ()), (b"b", (b"body",)), (b"c", ())]


def test_reader_at_every_split():
    for cut in range(len(REPLIES) + 1):
        reader = milter.Reader()
        got = reader.feed(REPLIES[:cut]) + reader.feed(REPLIES[cut:])
        assert [(r.command, r.fields) for r in got] == EXPECTED


@given(st.lists(st.integers(1, 40), max_size=30))
def test_reader_in_any_pieces(sizes):
    reader, got, at = milter.Reader(), [], 0
    for size in sizes:
        got += reader.feed(REPLIES[at:at + size])
        at += size
    got += reader.feed(REPLIES[at:])
    assert [(r.command, r.fields) for r in got] == EXPECTED


@pytest.mark.parametrize("data", [
    struct.pack(">I", 0), struct.pack(">I", milter.MAX_PACKET + 1) + b"c",
    milter.packet(b"Z"), milter.packet(b"O", b"\0\0\0\6"), milter.packet(b"y", b"250 ok\0"), milter.packet(b"y", b"5x"),
    milter.packet(b"i", b"\0\0"), milter.packet(b"h", b"\0value\0"), milter.packet(b"h", b"name-only"),
])
def test_malformed_replies(data):
    with pytest.raises(milter.MilterError):
        milter.Reader().feed(data)


@given(st.binary(max_size=200))
def test_any_bytes_give_replies_or_milter_error(data):
    try:
        for r in milter.Reader().feed(data):
            assert r.command in milter.VERDICTS | {b"+", b"-", b"2", b"b", b"e", b"h", b"i", b"l", b"m", b"p", b"q", b"O"}
    except milter.MilterError:
        pass
