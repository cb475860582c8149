"""Property tests of the sans-I/O core (qpsmtpd_stdio.protocol) against hostile bytes.

Every run is driven by fuzz/smtpdriver.py, which answers events the way the
session does, and checked by its `check()`: no exception but the documented
ProtocolError for misuse, only well-formed replies, nothing after 221/421,
never more messages than <CRLF>.<CRLF> terminators, no event after CLOSED.
On top of that: the same bytes split at any offset give the same events and
the same message bytes, and dot-stuffing round-trips.

CI runs a short campaign. FUZZ_EXAMPLES=N runs N examples per property
(e.g. FUZZ_EXAMPLES=20000 python3 -m pytest -q tests/unit/test_fuzz_protocol.py);
fuzz/README.md has the long, coverage-guided one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fuzz"))

from smtpdriver import TERMINATOR, check, drive, expected_message, overlapping_count, stuff  # noqa: E402

from qpsmtpd_stdio import protocol as p  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))


def fuzz_settings(ci_examples: int):
    return settings(
        max_examples=EXAMPLES or ci_examples,
        deadline=None,
        derandomize=os.environ.get("CI") == "true" and not EXAMPLES,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# Strategies ------------------------------------------------------------------

# Every published end-of-data trick, plus the separators str.splitlines() knows.
SMUGGLING = [
    b"\n.\n", b"\n.\r", b"\r.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r",
    b"\r\n\x00.\r\n", b"\r\n.\x00\r\n", b"\r\n\x00.\r", b"\r\n\x00.\n", b"\r\n.", b"\n\n.\r\n",
    b"\r\n.\r\r\n", b"\r\r\n.\r\r\n", b"\r\n.\r\n", b"\r\n..\r\n", b".\r\n", b"..", b"\r\n",
]
SPLITLINES = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
HOSTILE_CHARS = ["\x00", "\x01", "\x08", "\t", "\x1b", "\x7f", "\xa0", "\ufeff", "\r", "\n", " ", ".", ":", "<", ">",
                 "@", "%", "!", '"', "\\", "[", "]", "=", ","] + SPLITLINES
VERBS = ["HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "VRFY", "HELP", "QUIT", "STARTTLS", "AUTH",
         "BDAT", "EXPN", "ETRN", "XCLIENT", "helo", "mail", "Data", "quit", "", " ", "MAIL\x00", "DATA\x0b",
         "ok", "more", "*", "auth"]

hostile_text = st.one_of(
    st.text(alphabet=st.one_of(st.sampled_from(HOSTILE_CHARS), st.characters(codec="utf-8")), max_size=40),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "a-", "@", "<", '"', ".", "\\", "é"]), st.integers(0, 700)),
)
args = st.one_of(
    st.none(),
    hostile_text,
    st.builds(lambda a: "FROM:<" + a + ">", hostile_text),
    st.builds(lambda a: "TO:<" + a + ">", hostile_text),
    st.sampled_from(["FROM:<a@example.org>", "TO:<b@example.test>", "FROM:<>", "TO:<deny@evil.example>",
                     "FROM:<a@example.org> SIZE=10", "client.example", "PLAIN", "PLAIN ok", "LOGIN", "ok", "more",
                     "*"]),
)
eols = st.sampled_from([b"\r\n"] * 8 + [b"\n", b"\r", b"\r\r\n", b"\n\r", b"", b"\x00\r\n"])


@st.composite
def command_lines(draw) -> bytes:
    verb = draw(st.sampled_from(VERBS))
    arg = draw(args)
    line = verb if arg is None else f"{verb} {arg}"
    return line.encode("utf-8") + draw(eols)


body_pieces = st.one_of(
    st.sampled_from(SMUGGLING),
    st.binary(max_size=30),
    st.sampled_from([b"Subject: x\r\n", b"\r\n", b".", b"..x", b"MAIL FROM:<smuggled@evil.example>\r\n", b"DATA\r\n",
                     b"QUIT\r\n", b"x" * 998 + b"\r\n", b"y" * 1001 + b"\r\n"]),
)
bodies = st.lists(body_pieces, max_size=12).map(b"".join)

OPENING = b"EHLO client.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"


@st.composite
def dialogues(draw) -> bytes:
    """Commands with hostile arguments, raw bytes and message bodies, in any order."""
    segments = []
    if draw(st.booleans()):
        segments.append(OPENING)
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.integers(0, 9))
        if kind < 5:
            segments.append(draw(command_lines()))
        elif kind < 7:
            segments.append(draw(bodies))
        elif kind < 8:
            segments.append(draw(st.binary(max_size=60)))
        else:
            body = draw(bodies)
            data_line = b"DATA" + draw(st.sampled_from([b"\r\n", b"\n"]))  # commands may end in a bare LF
            segments.append(OPENING[OPENING.index(b"MAIL"):-6] + data_line + (stuff(body) if draw(st.booleans()) else body))
    return b"".join(segments)


def split_at(raw: bytes, cuts) -> list[bytes]:
    cuts = sorted({c for c in cuts if 0 < c < len(raw)})
    return [raw[a:b] for a, b in zip([0] + cuts, cuts + [len(raw)])]


def same(a, b) -> None:
    assert a.events == b.events
    assert a.messages == b.messages
    assert bytes(a.wire) == bytes(b.wire)


# Properties ------------------------------------------------------------------

@fuzz_settings(300)
@given(st.binary(max_size=3000))
@example(b"\x00" * 600 + b"\r\n")
@example(b"DATA\r\n" * 3)
def test_arbitrary_bytes(raw):
    check(drive([raw]), raw)


@fuzz_settings(300)
@given(dialogues())
def test_hostile_dialogues_keep_invariants(raw):
    check(drive([raw]), raw)
    check(drive([raw], max_errors=3), raw)
    check(drive([raw], starttls=True), raw)


@fuzz_settings(40)
@given(dialogues())
@example(OPENING + b"x\r\n.\r\nQUIT\r\n")
@example(OPENING + b"x\r\n\n.\r\nMAIL FROM:<s@evil.example>\r\n.\r\n")
@example(b"NOOP " + b"a" * 600 + b"\r\nQUIT\r\n")
def test_split_at_every_offset_gives_same_result(raw):
    whole = drive([raw])
    offsets = range(1, len(raw)) if len(raw) <= 300 else range(1, len(raw), len(raw) // 100)
    for i in offsets:
        same(whole, drive([raw[:i], raw[i:]]))
    same(whole, drive([raw[i:i + 1] for i in range(len(raw))]))


@fuzz_settings(200)
@given(dialogues(), st.lists(st.integers(0, 4000), max_size=30))
def test_random_read_boundaries_give_same_result(raw, cuts):
    same(drive([raw]), drive(split_at(raw, cuts)))


@fuzz_settings(300)
@given(st.lists(st.one_of(st.sampled_from([b".", b"..", b"...", b".\r", b"\r", b"\n", b"\r\n", b"x", b" ", b"\x00"]),
                          st.binary(max_size=8)), max_size=40).map(b"".join),
       st.lists(st.integers(0, 400), max_size=10))
@example(b".", [])
@example(b"..", [])
@example(b".\r\n..\r\n...\r\n", [])
@example(b"\n.\r\n", [])
@example(b"..x\r\n", [1, 2])
def test_dot_stuffing_round_trips(body, cuts):
    """What a correct client stuffs, the server unstuffs exactly: the smuggling fix keeps dot-unstuffing right."""
    raw = OPENING + stuff(body) + b"QUIT\r\n"
    for chunks in ([raw], split_at(raw, [c + len(OPENING) for c in cuts])):
        out = drive(chunks)
        check(out, raw)
        assert out.messages == [expected_message(body)]
        assert out.events[-1] == ("cmd", "QUIT", "")


@fuzz_settings(200)
@given(bodies, st.sampled_from(SMUGGLING))
def test_smuggled_second_message_is_never_a_message(body, fake_end):
    """A fake end-of-data followed by a whole second transaction yields one message and no smuggled commands."""
    smuggled = b"MAIL FROM:<smuggled@evil.example>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nSMUGGLED\r\n"
    data = body + fake_end + smuggled + b".\r\n"
    raw = OPENING + data + b"QUIT\r\n"
    out = drive([raw])
    check(out, raw)
    if overlapping_count(b"\r\n" + data, TERMINATOR) == 1:  # only the real end is a real end
        assert [e[0] for e in out.events].count("eom") == 1
        assert len(out.messages) == 1 and out.messages[0].endswith(b"SMUGGLED\r\n")
        assert not any(e[0] == "cmd" and "smuggled" in e[2] for e in out.events)
        assert out.events[-1] == ("cmd", "QUIT", "")


@pytest.mark.parametrize("data_line", [b"DATA\n", b"DATA\r\n"])
@pytest.mark.parametrize("step", [1, 2, 1000])
def test_end_of_data_never_starts_with_the_bare_lf_of_the_data_command(data_line, step):
    """Found by fuzz/fuzz_protocol.py (fuzz/corpus/protocol/crash-data-command-bare-lf-then-dot)."""
    raw = b"EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n" + data_line + b".\r\n..x\r\n.\r\nQUIT\r\n"
    out = drive([raw[i:i + step] for i in range(0, len(raw), step)])
    check(out, raw)
    if data_line == b"DATA\n":
        assert out.messages == [b"\r\n.x\r\n"]  # the "." line is text (its dot unstuffed), the real end is later
    else:
        assert out.messages == [b""]  # DATA<CRLF>.<CRLF> is an empty message
    assert out.events[-1] == ("cmd", "QUIT", "")


@fuzz_settings(150)
@given(dialogues(), st.integers(16, 600), st.integers(0, 1200), st.lists(st.integers(0, 3000), max_size=8))
def test_configured_limits_keep_invariants(raw, max_command, max_line, cuts):
    whole = drive([raw], max_command_length=max_command, max_line_length=max_line)
    check(whole, raw)
    same(whole, drive(split_at(raw, cuts), max_command_length=max_command, max_line_length=max_line))
    for event in whole.events:
        if event[0] == "cmd":
            # AUTH lines may carry an initial response up to RFC 4954's 12288 octets.
            limit = max(max_command, getattr(p, "SASL_LINE_LIMIT", 0)) if event[1] == "AUTH" else max_command
            assert len(f"{event[1]} {event[2]}".encode()) + 1 <= limit


@fuzz_settings(300)
@given(st.integers(200, 599), st.one_of(hostile_text, st.lists(hostile_text, max_size=5)),
       st.sampled_from([None, "2.0.0", "5.7.1"]))
def test_any_reply_text_is_well_formed_on_the_wire(code, text, enhanced):
    """Plugins choose reply text: whatever it holds, the wire sees only reply lines of that code."""
    wire = p.Reply(code, text, enhanced).to_bytes()
    lines = wire.split(b"\r\n")
    assert lines.pop() == b""
    for i, line in enumerate(lines):
        assert line[:3] == str(code).encode()
        assert line[3:4] == (b" " if i == len(lines) - 1 else b"-"), wire
        assert not any(c in line for c in b"\r\n\x00")


@pytest.mark.parametrize("code", [0, 199, 600, 999, -250])
def test_bad_reply_code_is_a_protocol_error(code):
    with pytest.raises(p.ProtocolError):
        p.Reply(code, "x")


# Misuse is the caller's bug, reported as ProtocolError -------------------------

def test_unanswered_event_is_a_protocol_error():
    conn = p.ServerConnection()
    conn.send(p.Reply(220, "hi"))
    conn.receive_data(b"NOOP\r\nNOOP\r\n")
    assert isinstance(conn.next_event(), p.Command)
    with pytest.raises(p.ProtocolError):
        conn.next_event()


def test_unsolicited_reply_is_a_protocol_error():
    conn = p.ServerConnection()
    conn.send(p.Reply(220, "hi"))
    with pytest.raises(p.ProtocolError):
        conn.send(p.Reply(250, "nobody asked"))


@pytest.mark.parametrize("last", [p.Reply(221, "bye"), p.Reply(421, "going away")])
def test_nothing_after_closed(last):
    conn = p.ServerConnection()
    conn.send(p.Reply(220, "hi"))
    conn.receive_data(b"QUIT\r\nNOOP\r\n")
    conn.next_event()
    conn.send(last)
    assert conn.state == p.CLOSED
    with pytest.raises(p.ProtocolError):
        conn.next_event()


def test_421_closes_in_any_state_even_mid_data():
    conn = p.ServerConnection()
    conn.send(p.Reply(220, "hi"))
    conn.receive_data(OPENING + b"half a mess")
    for _ in range(4):
        conn.send(p.Reply(354 if conn.next_event().verb == "DATA" else 250, "ok"))
    assert conn.state == p.DATA
    assert isinstance(conn.next_event(), p.MessageData)
    conn.send(p.Reply(421, "shutting down"))
    assert conn.state == p.CLOSED


# STARTTLS command injection (CVE-2011-0411, CVE-2024-34083): the core's part --

@pytest.mark.parametrize("injected", [b"RSET\r\n", b"EHLO x\r\n", b"NOOP injected\r\n",
                                      b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n"])
def test_plaintext_pipelined_after_starttls_is_discarded(injected):
    raw = b"EHLO client.example\r\nSTARTTLS\r\n" + injected
    # Everything arrived before the 220: nothing after STARTTLS may become a command.
    out = drive([raw], starttls=True, eof=False)
    assert out.events == [("cmd", "EHLO", "client.example"), ("cmd", "STARTTLS", "")]
