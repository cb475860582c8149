"""A tiny sans-I/O client of qpsmtpd_stdio.protocol, shared by the hypothesis tests and the atheris targets.

`drive(chunks)` feeds the chunks to a ServerConnection one at a time and,
after each, takes every event out and answers it the way the session does
(250 for commands, 354 for DATA, 221 for QUIT, the event's own reply for
errors), with no plugins and no I/O. It returns what happened, normalised
so that two runs over the same bytes split differently can be compared.
`check(outcome, raw)` asserts the invariants every run must keep.
"""

from __future__ import annotations

import re

from qpsmtpd_stdio import protocol as p

REPLY_LINE = re.compile(rb"[2-5][0-9][0-9][ -][^\r\n]*\r\n")
TERMINATOR = b"\r\n.\r\n"
AUTH_RESPONSE = getattr(p, "AuthResponse", ())  # SASL lines (RFC 4954), where the core has them


class Outcome:
    __slots__ = ("events", "wire", "messages", "closed_by_server", "state")

    def __init__(self) -> None:
        self.events: list[tuple] = []   # normalised: consecutive MessageData merged
        self.wire = bytearray()         # every reply sent
        self.messages: list[bytes] = []  # one per EndOfMessage, the unstuffed octets
        self.closed_by_server = False
        self.state = p.CONNECTED

    def add(self, event: tuple) -> None:
        if event[0] == "data" and self.events and self.events[-1][0] == "data":
            self.events[-1] = ("data", self.events[-1][1] + event[1])
        else:
            self.events.append(event)


def answer(conn: p.ServerConnection, event, errors: list[int], max_errors: int, starttls: bool) -> p.Reply:
    """The reply a plugin-less session would give."""
    if isinstance(event, (p.OutOfSequence, p.BadLine)):
        errors[0] += 1
        if max_errors and errors[0] >= max_errors:
            return p.Reply(421, "too many errors", "4.7.0")
        return event.reply
    if isinstance(event, AUTH_RESPONSE):
        line = event.line
        return p.Reply(*{"*": (501, "cancelled"), "ok": (235, "ok"), "more": (334, "")}.get(line, (535, "failed")))
    verb, arg = event.verb, event.arg
    if verb == "AUTH" and "AUTH" in p.KNOWN_VERBS:
        words = arg.split()
        if len(words) == 1:
            return p.Reply(334, "VXNlcm5hbWU6")  # no initial response: a SASL exchange starts
        return p.Reply(235, "ok") if words[-1:] == ["ok"] else p.Reply(535, "failed", "5.7.8")
    if verb == "QUIT":
        return p.Reply(221, "bye", "2.0.0")
    if verb == "DATA":
        return p.Reply(354, "go ahead")
    if verb == "RCPT" and "deny" in arg.lower():
        return p.Reply(550, "relaying denied", "5.7.1")
    if verb == "STARTTLS" and starttls:
        return p.Reply(220, "go ahead with TLS", "2.0.0")
    if verb in p.KNOWN_VERBS:
        return p.Reply(250, "OK", "2.0.0")
    errors[0] += 1
    return p.Reply(500, "Unrecognized command", "5.5.1")


def drive(chunks, *, max_command_length: int = 512, max_line_length: int = 1000,
          max_errors: int = 0, starttls: bool = False, eof: bool = True) -> Outcome:
    conn = p.ServerConnection(max_command_length, max_line_length)
    out = Outcome()
    out.wire += conn.send(p.Reply(220, "ready"))
    errors = [0]
    message = bytearray()
    feeds = list(chunks) + ([b""] if eof else [])
    for chunk in feeds:
        if conn.state == p.CLOSED:
            break
        conn.receive_data(chunk)
        while conn.state != p.CLOSED:
            event = conn.next_event()
            if event is p.NEED_DATA:
                break
            if isinstance(event, p.MessageData):
                assert event.data, "empty MessageData"
                out.add(("data", bytes(event.data)))
                message += event.data
                continue
            if isinstance(event, p.ChunkStart):  # BDAT: its octets follow; the reply comes at EndOfChunk
                out.add(("chunk", event.size, event.last))
                continue
            if isinstance(event, p.ConnectionClosed):
                out.add(("closed", event.in_data))
                conn.close()  # as the session does
                break
            if isinstance(event, p.EndOfMessage):
                s = event.stats
                out.add(("eom", s.size, s.bare_lf, s.bare_cr, s.long_line))
                assert s.size == len(message), (s.size, len(message))
                out.messages.append(bytes(message))
                message.clear()
                reply = p.Reply(250, "Queued", "2.0.0")
            elif isinstance(event, p.EndOfChunk):
                if event.last:  # a whole BDAT message: no terminator, so it is counted apart from DATA's
                    out.add(("bdat-eom", event.stats.size))
                    assert event.stats.size == len(message), (event.stats.size, len(message))
                    out.messages.append(bytes(message))
                    message.clear()
                reply = p.Reply(250, "OK", "2.0.0")
            elif isinstance(event, p.BadChunk):
                out.add(("badchunk", event.reply.code))
                message.clear()
                reply = event.reply
            elif isinstance(event, p.Command):
                out.add(("cmd", event.verb, event.arg))
                reply = answer(conn, event, errors, max_errors, starttls)
            elif isinstance(event, p.OutOfSequence):
                out.add(("oos", event.command.verb, event.reply.code))
                reply = answer(conn, event, errors, max_errors, starttls)
            elif isinstance(event, AUTH_RESPONSE):
                out.add(("auth", event.line))
                reply = answer(conn, event, errors, max_errors, starttls)
            elif isinstance(event, p.BadLine):
                out.add(("bad", event.reply.code))
                reply = answer(conn, event, errors, max_errors, starttls)
            else:
                raise AssertionError(f"unknown event {event!r}")
            was_data = conn.state == p.DATA
            out.wire += conn.send(reply)
            if conn.state not in (p.MAIL, p.RCPT, p.DATA, p.BDAT, p.CHUNKS):
                message.clear()  # the transaction is gone (RSET, EHLO...): so are its BDAT chunks, as in the session
            if reply.code in (221, 421):
                out.closed_by_server = True
            if was_data and conn.state != p.READY and not out.closed_by_server:
                raise AssertionError(f"state {conn.state} after the end of a message")
    out.state = conn.state
    if conn.state == p.CLOSED:
        # Nothing more comes out of a closed connection: asking is a ProtocolError.
        conn.receive_data(b"QUIT\r\n")
        try:
            conn.next_event()
        except p.ProtocolError:
            pass
        else:
            raise AssertionError("an event after CLOSED")
    return out


def overlapping_count(data: bytes, needle: bytes) -> int:
    n, i = 0, data.find(needle)
    while i >= 0:
        n += 1
        i = data.find(needle, i + 1)
    return n


def check(out: Outcome, raw: bytes) -> None:
    """The invariants of every run, whatever the bytes."""
    eoms = sum(1 for e in out.events if e[0] == "eom")
    assert eoms + sum(1 for e in out.events if e[0] == "bdat-eom") == len(out.messages)
    assert eoms <= overlapping_count(raw, TERMINATOR), "more messages than <CRLF>.<CRLF> terminators"
    wire = bytes(out.wire)
    pos = 0
    while pos < len(wire):
        m = REPLY_LINE.match(wire, pos)
        assert m, f"malformed reply at {wire[pos:pos + 80]!r}"
        line = m.group()
        pos = m.end()
        if line[:3] in (b"221", b"421") and line[3:4] == b" ":
            assert pos == len(wire), f"reply after {line!r}: {wire[pos:pos + 80]!r}"
    for event in out.events:
        if event[0] == "auth":
            assert not any(c in event[1] for c in "\r\n\x00"), event
        if event[0] == "cmd":
            # A command never carries a line break or a control octet.
            assert not any(c in event[2] for c in "\r\n\x00"), event
            assert "\n" not in event[1] and "\r" not in event[1]


def stuff(body: bytes) -> bytes:
    """What a correct client sends for `body` after DATA: dot-stuffed, then <CRLF>.<CRLF>.

    Lines are separated by CRLF only (RFC 5321 4.5.2); a bare CR or LF is
    just an octet of the line it is in.
    """
    lines = body.split(b"\r\n")
    stuffed = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)
    if stuffed and not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


def expected_message(body: bytes) -> bytes:
    return body if not body or body.endswith(b"\r\n") else body + b"\r\n"
