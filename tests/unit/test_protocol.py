"""The sans-I/O core with plain bytes: states, transitions, lines, DATA scanning."""

import pytest
from hypothesis import given, settings, strategies as st

from qpsmtpd_stdio import protocol as p
from qpsmtpd_stdio.protocol import Reply
from qpsmtpd_stdio.receivebuffer import DataStats, ReceiveBuffer, LINE_TOO_LONG


def greeted(**kw):
    conn = p.ServerConnection(**kw)
    assert conn.send(Reply(220, "hi")) == b"220 hi\r\n"
    assert conn.state == p.GREETED
    return conn


def command(conn, line: bytes):
    conn.receive_data(line)
    return conn.next_event()


def test_greeting_states():
    assert greeted().state == p.GREETED
    conn = p.ServerConnection()
    conn.send(Reply(554, "go away", "5.7.1"))
    assert conn.state == p.REJECTED
    conn = p.ServerConnection()
    conn.send(Reply(421, "busy", "4.3.2"))
    assert conn.state == p.CLOSED


def test_full_transaction_transitions():
    conn = greeted()
    steps = [
        (b"EHLO x\r\n", 250, p.READY),
        (b"MAIL FROM:<a@b>\r\n", 250, p.MAIL),
        (b"RCPT TO:<c@d>\r\n", 250, p.RCPT),
        (b"RCPT TO:<e@f>\r\n", 550, p.RCPT),
        (b"DATA\r\n", 354, p.DATA),
    ]
    for line, code, state in steps:
        ev = command(conn, line)
        assert isinstance(ev, p.Command)
        conn.send(Reply(code, "x"))
        assert conn.state == state, line
    conn.receive_data(b"Subject: x\r\n\r\nbody\r\n.\r\n")
    ev = conn.next_event()
    assert isinstance(ev, p.MessageData) and ev.data == b"Subject: x\r\n\r\nbody\r\n"
    ev = conn.next_event()
    assert isinstance(ev, p.EndOfMessage) and ev.stats.size == len(b"Subject: x\r\n\r\nbody\r\n")
    conn.send(Reply(250, "ok"))
    assert conn.state == p.READY
    ev = command(conn, b"QUIT\r\n")
    conn.send(Reply(221, "bye"))
    assert conn.state == p.CLOSED
    with pytest.raises(p.ProtocolError):
        conn.next_event()


@pytest.mark.parametrize("state_lines,line,code", [
    ([], b"MAIL FROM:<a@b>\r\n", 503),
    ([], b"RCPT TO:<a@b>\r\n", 503),
    ([], b"DATA\r\n", 503),
    ([b"EHLO x\r\n"], b"RCPT TO:<a@b>\r\n", 503),
    ([b"EHLO x\r\n"], b"DATA\r\n", 503),
    ([b"EHLO x\r\n", b"MAIL FROM:<a@b>\r\n"], b"DATA\r\n", 503),
    ([b"EHLO x\r\n", b"MAIL FROM:<a@b>\r\n"], b"MAIL FROM:<a@b>\r\n", 503),
])
def test_out_of_sequence(state_lines, line, code):
    conn = greeted()
    for earlier in state_lines:
        command(conn, earlier)
        conn.send(Reply(250, "ok"))
    before = conn.state
    ev = command(conn, line)
    assert isinstance(ev, p.OutOfSequence)
    assert ev.reply.code == code
    conn.send(ev.reply)
    assert conn.state == before


def test_rejected_greeting_serves_only_quit():
    conn = p.ServerConnection()
    conn.send(Reply(554, "no"))
    for line in (b"EHLO x\r\n", b"MAIL FROM:<a@b>\r\n", b"FOO\r\n"):
        ev = command(conn, line)
        assert isinstance(ev, p.OutOfSequence) and ev.reply.code == 503
        conn.send(ev.reply)
    ev = command(conn, b"QUIT\r\n")
    assert isinstance(ev, p.Command)
    conn.send(Reply(221, "bye"))
    assert conn.state == p.CLOSED


def test_second_ehlo_mid_transaction_goes_back_to_ready():
    conn = greeted()
    for line in (b"EHLO x\r\n", b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<c@d>\r\n"):
        command(conn, line)
        conn.send(Reply(250, "ok"))
    command(conn, b"EHLO again\r\n")
    conn.send(Reply(250, "ok"))
    assert conn.state == p.READY


def test_rset_and_failed_commands_keep_state():
    conn = greeted()
    command(conn, b"EHLO x\r\n")
    conn.send(Reply(250, "ok"))
    command(conn, b"MAIL FROM:<a@b>\r\n")
    conn.send(Reply(550, "no"))
    assert conn.state == p.READY
    command(conn, b"MAIL FROM:<a@b>\r\n")
    conn.send(Reply(250, "ok"))
    command(conn, b"RSET\r\n")
    conn.send(Reply(250, "ok"))
    assert conn.state == p.READY


def test_verbs_are_case_insensitive_and_lf_accepted():
    conn = greeted()
    ev = command(conn, b"ehlo x\n")
    assert isinstance(ev, p.Command) and ev.verb == "EHLO" and ev.arg == "x"


def test_must_answer_before_next_event():
    conn = greeted()
    conn.receive_data(b"NOOP\r\nNOOP\r\n")
    conn.next_event()
    with pytest.raises(p.ProtocolError):
        conn.next_event()


def test_unknown_verb_is_a_command():
    conn = greeted()
    ev = command(conn, b"XYZZY plugh\r\n")
    assert isinstance(ev, p.Command) and ev.verb == "XYZZY"


@pytest.mark.parametrize("bad", [b"NOOP\x00x\r\n", b"EHLO a\rb\r\n", b"NOOP\x7f\r\n", b"NOOP \x0b\r\n"])
def test_control_bytes_in_commands_refused(bad):
    conn = greeted()
    ev = command(conn, bad)
    assert isinstance(ev, p.BadLine) and ev.reply.code == 500


def test_invalid_utf8_refused():
    conn = greeted()
    ev = command(conn, b"EHLO \xff\xfe\r\n")
    assert isinstance(ev, p.BadLine)


@pytest.mark.parametrize("sep", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028"])
def test_splitlines_separators_do_not_split_commands(sep):
    conn = greeted()
    conn.receive_data(f"NOOP a{sep}QUIT\r\n".encode())
    ev = conn.next_event()
    # One event for the whole line: refused as a control, or one command with the separator inside.
    assert isinstance(ev, (p.BadLine, p.Command))
    if isinstance(ev, p.Command):
        assert ev.verb == "NOOP" and sep in ev.arg
    conn.send(Reply(250, "ok"))
    assert conn.next_event() is p.NEED_DATA


def test_long_command_line_one_error_and_bounded_memory():
    conn = greeted(max_command_length=512)
    for _ in range(64):
        conn.receive_data(b"A" * 16384)
        assert conn.next_event() is p.NEED_DATA
        assert conn.buffered < 1024
    conn.receive_data(b"\r\nNOOP\r\n")
    ev = conn.next_event()
    assert isinstance(ev, p.BadLine) and ev.reply.code == 500
    conn.send(ev.reply)
    ev = conn.next_event()
    assert isinstance(ev, p.Command) and ev.verb == "NOOP"


def test_command_at_exact_limit_is_fine():
    conn = greeted(max_command_length=512)
    line = b"NOOP " + b"x" * (512 - 7) + b"\r\n"
    assert len(line) == 512
    ev = command(conn, line)
    assert isinstance(ev, p.Command)
    conn.send(Reply(250, "ok"))
    ev = command(conn, b"NOOP " + b"x" * (512 - 6) + b"\r\n")
    assert isinstance(ev, p.BadLine)


def test_eof_gives_connection_closed():
    conn = greeted()
    conn.receive_data(b"NOOP")
    assert conn.next_event() is p.NEED_DATA
    conn.receive_data(b"")
    ev = conn.next_event()
    assert isinstance(ev, p.ConnectionClosed) and not ev.in_data


def in_data():
    conn = greeted()
    for line, code in ((b"EHLO x\r\n", 250), (b"MAIL FROM:<a@b>\r\n", 250), (b"RCPT TO:<c@d>\r\n", 250), (b"DATA\r\n", 354)):
        command(conn, line)
        conn.send(Reply(code, "x"))
    assert conn.state == p.DATA
    return conn


def drain(conn, chunks):
    """Feed chunks; return (message bytes, number of EndOfMessage events, events after the end)."""
    data, ends = b"", 0
    for chunk in chunks:
        if not chunk:
            continue  # b"" would mean end of input
        conn.receive_data(chunk)
        while conn.state == p.DATA:
            ev = conn.next_event()
            assert not isinstance(ev, p.ConnectionClosed)
            if ev is p.NEED_DATA:
                break
            if isinstance(ev, p.MessageData):
                data += ev.data
            elif isinstance(ev, p.EndOfMessage):
                ends += 1
                conn.send(Reply(250, "ok"))
    return data, ends


def test_eof_in_data():
    conn = in_data()
    conn.receive_data(b"partial")
    assert isinstance(conn.next_event(), p.MessageData)
    conn.receive_data(b"")
    ev = conn.next_event()
    assert isinstance(ev, p.ConnectionClosed) and ev.in_data


@pytest.mark.parametrize("body,expected", [
    (b"..x\r\n.\r\n", b".x\r\n"),
    (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n"),
    (b"a\r\n...\r\n.\r\n", b"a\r\n..\r\n"),
    (b".single\r\n.\r\n", b"single\r\n"),
    (b".\r\n", b""),
    (b"a\r\n.b\r\n.\r\n", b"a\r\nb\r\n"),
])
def test_dot_unstuffing(body, expected):
    data, ends = drain(in_data(), [body])
    assert (data, ends) == (expected, 1)


SMUGGLING = [b"\n.\r\n", b"\n.\n", b"\r.\r", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r", b"\n.\r", b"\r.\n",
             b"\r\n\x00.\r\n", b"\r\n.\x00\r\n"]


@pytest.mark.parametrize("fake_end", SMUGGLING)
def test_smuggled_terminators_are_message_text(fake_end):
    smuggled = b"MAIL FROM:<x@evil>\r\nRCPT TO:<y@victim>\r\nDATA\r\nsmuggled\r\n"
    body = b"Subject: a\r\n\r\nfirst" + fake_end + smuggled + b".\r\n"
    conn = in_data()
    data, ends = drain(conn, [body])
    assert ends == 1
    assert b"MAIL FROM:<x@evil>" in data
    assert conn.state == p.READY and conn.next_event() is p.NEED_DATA


def test_data_split_at_every_offset_gives_same_result():
    body = b"Subject: a\r\n\r\n..dot\r\n.\r\nnot\r\n\r\n.x\r\nend\r\n.\r\nNOOP\r\n"
    whole, ends = drain(in_data(), [body])
    assert ends == 1
    for i in range(len(body) + 1):
        for j in range(i, len(body) + 1):
            assert drain(in_data(), [body[:i], body[i:j], body[j:]]) == (whole, 1), (i, j)


def test_stats_bare_lf_cr_and_long_lines():
    stats = DataStats()
    stats.add(b"ok\r\nfine\r\n", 6)
    assert not stats.bare_lf and not stats.bare_cr and not stats.long_line
    stats.add(b"bare\nlf\r\n", 1000)
    assert stats.bare_lf and not stats.bare_cr
    stats = DataStats()
    stats.add(b"bare\rcr\r\n", 1000)
    assert stats.bare_cr and not stats.bare_lf
    stats = DataStats()
    stats.add(b"x" * 600, 1202)
    stats.add(b"x" * 600 + b"\r\n", 1202)
    assert not stats.long_line  # exactly the limit
    stats.add(b"y\r\n", 1202)
    stats = DataStats()
    stats.add(b"x" * 600, 1201)
    stats.add(b"x" * 600 + b"\r\n", 1201)
    assert stats.long_line


def test_receivebuffer_take_line_limit_and_discard():
    rb = ReceiveBuffer()
    rb.feed(b"x" * 100)
    assert rb.take_line(50) is None
    rb.feed(b"more\nNEXT\r\n")
    assert rb.take_line(50) is LINE_TOO_LONG
    assert rb.take_line(50) == b"NEXT\r\n"


def test_reply_formatting():
    assert Reply(250, ["a", "b", "c"], "2.0.0").to_bytes() == b"250-2.0.0 a\r\n250-2.0.0 b\r\n250 2.0.0 c\r\n"
    assert Reply(550, "5.7.1 own code", "5.0.0").to_bytes() == b"550 5.7.1 own code\r\n"
    assert Reply(250, "line one\nline two").to_bytes() == b"250-line one\r\n250 line two\r\n"
    assert Reply(500, "evil\r\n250 injected").to_bytes() == b"500-evil\r\n500 250 injected\r\n"
    assert Reply(500, "nul\x00here").to_bytes() == b"500 nulhere\r\n"
    with pytest.raises(p.ProtocolError):
        Reply(99, "x")


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"\r\n", b"\n", b"x", b"xxxxx", b".", b"\r"]), max_size=60),
       st.integers(1, 12), st.data())
def test_long_line_check_agrees_with_splitting(pieces, limit, data):
    message = b"".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(message)), max_size=5)))
    stats = DataStats()
    for a, b in zip([0] + cuts, cuts + [len(message)]):
        stats.add(message[a:b], limit)
    lines = message.split(b"\n")
    lengths = [len(line) + 1 for line in lines[:-1]] + [len(lines[-1])]
    assert stats.long_line == (max(lengths) > limit)


LINE = st.lists(st.sampled_from([b".", b"x", b"\r", b"\n", b".."]), max_size=6).map(b"".join).filter(
    lambda line: b"\r\n" not in line)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINE, max_size=12), st.data())
def test_take_data_agrees_with_a_line_by_line_reading(lines, data):
    """What a client stuffs and sends comes out as it was, however the octets are cut."""
    wire = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"
    expected = b"".join(line + b"\r\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    rb, got, ended = ReceiveBuffer(), b"", False
    rb.start_data()
    for a, b in zip([0] + cuts, cuts + [len(wire)]):
        rb.feed(wire[a:b])
        while not ended:
            chunk, ended = rb.take_data()
            got += chunk
            if not chunk:
                break
    assert ended and got == expected and len(rb) == 0
