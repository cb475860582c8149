"""CHUNKING/BDAT (RFC 3030) and LIMITS (RFC 9422): the sans-I/O core with plain bytes, then the real binary."""

from __future__ import annotations

import pytest

from conftest import dialogue

from qpsmtpd_stdio import protocol as p
from qpsmtpd_stdio.protocol import Reply
from qpsmtpd_stdio.receivebuffer import DataStats

OPEN = [b"EHLO x\r\n", b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<c@d>\r\n"]
# Content that DATA would treat specially: a lone dot line, leading dots, a bare LF; BDAT keeps every octet.
CHUNK1 = b"Subject: x\r\n\r\n.\r\n..two dots\r\n"
CHUNK2 = b".\r\nQUIT\r\nend\n"


def bdat(data: bytes, last: bool = False) -> bytes:
    return b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data


def in_transaction() -> p.ServerConnection:
    conn = p.ServerConnection()
    conn.send(Reply(220, "hi"))
    for line in OPEN:
        conn.receive_data(line)
        assert isinstance(conn.next_event(), p.Command)
        conn.send(Reply(250, "ok"))
    assert conn.state == p.RCPT
    return conn


def drive(conn: p.ServerConnection, wire: bytes, split: int | None = None, code=lambda event: 250):
    """Feed `wire` (in two parts at `split`), answer every event; a list of (event, reply code or None)."""
    parts = [part for part in ([wire] if split is None else [wire[:split], wire[split:]]) if part]  # b"" is EOF
    out = []
    while conn.state != p.CLOSED:
        event = conn.next_event()
        if event is p.NEED_DATA:
            if not parts:
                break
            conn.receive_data(parts.pop(0))
            continue
        if isinstance(event, (p.MessageData, p.ChunkStart)):
            out.append((event, None))
            continue
        if isinstance(event, p.ConnectionClosed):
            out.append((event, None))
            break
        reply = event.reply if isinstance(event, (p.OutOfSequence, p.BadLine)) else Reply(code(event), "x")
        conn.send(reply)
        out.append((event, reply.code))
    return out


def message_of(events) -> bytes:
    return b"".join(e.data for e, _ in events if isinstance(e, p.MessageData))


def test_chunks_give_exact_octets_at_every_split():
    wire = bdat(CHUNK1) + bdat(CHUNK2, last=True) + b"QUIT\r\n"
    for split in range(len(wire) + 1):
        conn = in_transaction()
        events = drive(conn, wire, split)
        assert message_of(events) == CHUNK1 + CHUNK2, split
        kinds = [(type(e).__name__, c) for e, c in events if not isinstance(e, p.MessageData)]
        assert kinds == [("ChunkStart", None), ("EndOfChunk", 250), ("ChunkStart", None), ("EndOfChunk", 250),
                         ("Command", 250)], split
        starts = [e for e, _ in events if isinstance(e, p.ChunkStart)]
        assert [(s.size, s.last, s.first) for s in starts] == [(len(CHUNK1), False, True), (len(CHUNK2), True, False)]
        ends = [e for e, _ in events if isinstance(e, p.EndOfChunk)]
        assert ends[-1].stats.size == len(CHUNK1 + CHUNK2) and ends[-1].stats.bare_lf
        assert conn.state == p.CLOSED  # the QUIT after the chunk was read as a command


def test_states_between_and_after_chunks():
    conn = in_transaction()
    events = drive(conn, bdat(b"abc"))
    assert conn.state == p.CHUNKS and isinstance(events[-1][0], p.EndOfChunk) and not events[-1][0].last
    for line in (b"DATA\r\n", b"RCPT TO:<e@f>\r\n", b"MAIL FROM:<a@b>\r\n"):
        [(event, code)] = drive(conn, line)
        assert isinstance(event, p.OutOfSequence) and code == 503, line
        assert conn.state == p.CHUNKS
    drive(conn, bdat(b"", last=True))
    assert conn.state == p.READY


def test_data_after_bdat_refused_text():
    conn = in_transaction()
    drive(conn, bdat(b"abc"))
    [(event, code)] = drive(conn, b"DATA\r\n")
    assert code == 503 and b"DATA is not permitted after BDAT" in event.reply.to_bytes()


def test_bdat_zero_last():
    conn = in_transaction()
    events = drive(conn, b"BDAT 0 LAST\r\n")
    assert [type(e) for e, _ in events] == [p.ChunkStart, p.EndOfChunk]
    assert events[1][0].last and events[1][0].stats.size == 0
    assert conn.state == p.READY


@pytest.mark.parametrize("state_lines", [[], OPEN[:1], OPEN[:2]])
def test_illegal_bdat_octets_are_read_and_dropped(state_lines):
    conn = p.ServerConnection()
    conn.send(Reply(220, "hi"))
    for line in state_lines:
        drive(conn, line)
    before = conn.state
    # The chunk holds command lines: they must never run.
    events = drive(conn, bdat(b"RSET\r\nQUIT\r\n", last=True) + b"NOOP\r\n")
    assert [(type(e), c) for e, c in events] == [(p.OutOfSequence, 503), (p.Command, 250)]
    assert events[1][0].verb == "NOOP"
    assert conn.state == before


def test_rejected_state_reads_the_chunk_too():
    conn = p.ServerConnection()
    conn.send(Reply(554, "go away", "5.7.1"))
    events = drive(conn, bdat(b"QUIT\r\n") + b"QUIT\r\n")
    assert [(type(e), c) for e, c in events] == [(p.OutOfSequence, 503), (p.Command, 250)]
    assert conn.state == p.CLOSED


def test_refused_chunk_ends_the_transaction_and_pipelined_chunks_are_dropped():
    conn = in_transaction()
    wire = bdat(b"first") + bdat(b"second") + bdat(b"third", last=True) + b"NOOP\r\n"
    events = drive(conn, wire, code=lambda e: 552 if isinstance(e, p.EndOfChunk) else 250)
    codes = [(type(e), c) for e, c in events if c is not None]
    assert codes == [(p.EndOfChunk, 552), (p.OutOfSequence, 503), (p.OutOfSequence, 503), (p.Command, 250)]
    assert message_of(events) == b"first"
    assert conn.state == p.READY


@pytest.mark.parametrize("line", [b"BDAT\r\n", b"BDAT x\r\n", b"BDAT -1\r\n", b"BDAT 5 FIRST\r\n", b"BDAT 5 LAST x\r\n",
                                  b"BDAT 1 LAST\r\n"[:0] + b"BDAT \xd9\xa3\r\n", b"BDAT 123456789012345678901\r\n"])
def test_bad_syntax_501_resets_the_transaction(line):
    conn = in_transaction()
    [(event, code)] = drive(conn, line)
    assert isinstance(event, p.BadChunk) and code == 501, line
    assert conn.state == p.READY


def test_client_gone_mid_chunk():
    conn = in_transaction()
    conn.receive_data(b"BDAT 10\r\nabc")
    assert isinstance(conn.next_event(), p.ChunkStart)
    assert conn.next_event().data == b"abc"
    assert conn.next_event() is p.NEED_DATA
    conn.receive_data(b"")
    event = conn.next_event()
    assert isinstance(event, p.ConnectionClosed) and event.in_data


@pytest.mark.parametrize("chunks,bare_cr,bare_lf", [
    ([b"a\r", b"\nb\r\n"], False, False),   # a CRLF split between chunks is not bare
    ([b"a\r", b"b\r\n"], True, False),
    ([b"a\r\n", b"\nb\r\n"], False, True),
    ([b"a\r\n", b"b\r"], True, False),      # a CR at the very end
    ([b"a\r", b"", b"\n"], False, False),
])
def test_stats_across_chunks(chunks, bare_cr, bare_lf):
    stats = DataStats()
    for chunk in chunks:
        stats.add(chunk, True)
    stats.finish()
    assert (stats.bare_cr, stats.bare_lf) == (bare_cr, bare_lf)
    assert stats.size == sum(map(len, chunks))


# The real binary -------------------------------------------------------------------------------
EHLO_MAIL_RCPT = dialogue("EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>")
HEAD = b"From: a@example.org\r\nSubject: chunked\r\n\r\n"
BODY = b".\r\n..leading dots stay\r\n.\r\nend\r\n"


def test_ehlo_advertises_chunking_and_limits_not_binarymime(smtp):
    smtp.write("max_recipients", "7")
    smtp.write("max_messages", "3")
    r = smtp.run(dialogue("EHLO c", "QUIT"))
    assert b"250-CHUNKING\r\n" in r.stdout and b"BINARYMIME" not in r.stdout
    assert b"250 LIMITS RCPTMAX=7 MAILMAX=3\r\n" in r.stdout
    smtp.write("max_messages", "0")
    assert b"250 LIMITS RCPTMAX=7\r\n" in smtp.run(dialogue("EHLO c", "QUIT")).stdout


def test_bdat_stores_the_exact_octets(smtp):
    r = smtp.run(EHLO_MAIL_RCPT + bdat(HEAD) + bdat(BODY, last=True) + b"QUIT\r\n")
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 250, 250, 250, 221], r.stdout
    assert b"250 2.0.0 %d octets received" % len(HEAD) in r.stdout
    [msg] = smtp.messages()
    assert msg.endswith(HEAD.split(b"\r\n\r\n")[0].replace(b"\r\n", b"\n") + b"\n\n" + BODY.replace(b"\r\n", b"\n"))
    assert b"Received: from client.example" in msg


def test_bdat_zero_last_and_two_messages(smtp):
    msg = HEAD + b"one\r\n"
    r = smtp.run(EHLO_MAIL_RCPT + bdat(msg) + b"BDAT 0 LAST\r\n"
                 + dialogue("MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>") + bdat(msg, last=True)
                 + b"QUIT\r\n")
    assert r.codes == [220, 250, 250, 250, 250, 250, 250, 250, 250, 221], r.stdout
    assert len(smtp.messages()) == 2


def test_bdat_and_data_in_one_transaction_refused(smtp):
    r = smtp.run(EHLO_MAIL_RCPT + bdat(HEAD) + dialogue("DATA", "RCPT TO:<x@example.test>") + bdat(b"x\r\n", last=True)
                 + b"QUIT\r\n")
    assert r.codes == [220, 250, 250, 250, 250, 503, 503, 250, 221], r.stdout
    [msg] = smtp.messages()
    assert b"x@example.test" not in msg


def test_databytes_552_after_the_chunk_and_the_rest_consumed(smtp):
    smtp.write("databytes", "100")
    big = b"Subject: big\r\n\r\n" + b"x" * 200 + b"\r\n"
    r = smtp.run(EHLO_MAIL_RCPT + bdat(big) + bdat(b"QUIT\r\n") + bdat(b"RSET\r\n", last=True) + b"NOOP\r\nQUIT\r\n")
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 250, 552, 503, 503, 250, 221], r.stdout
    assert smtp.messages() == []
    assert smtp.leftovers() == []


def test_databytes_on_the_last_chunk(smtp):
    smtp.write("databytes", "100")
    r = smtp.run(EHLO_MAIL_RCPT + bdat(b"Subject: big\r\n\r\n") + bdat(b"y" * 120 + b"\r\n", last=True) + b"QUIT\r\n")
    assert r.codes == [220, 250, 250, 250, 250, 552, 221], r.stdout
    assert smtp.messages() == []


def test_bad_bdat_501_resets_the_transaction(smtp):
    r = smtp.run(EHLO_MAIL_RCPT + b"BDAT many\r\n" + dialogue("RCPT TO:<bob@example.test>", "QUIT"))
    assert r.codes == [220, 250, 250, 250, 501, 503, 221], r.stdout


def test_bdat_bare_lf_follows_bare_newline_policy(smtp):
    msg = HEAD + b"bare\nline\r\n"
    r = smtp.run(EHLO_MAIL_RCPT + bdat(msg, last=True) + b"QUIT\r\n")
    assert r.codes[-2] == 250 and smtp.messages()[0].endswith(b"\nbare\nline\n")  # normalize, the default
    smtp.write("bare_newline", "reject")
    r = smtp.run(EHLO_MAIL_RCPT + bdat(msg, last=True) + b"QUIT\r\n")
    assert r.codes[-2] == 554 and len(smtp.messages()) == 1
    smtp.write("bare_newline", "keep")
    r = smtp.run(EHLO_MAIL_RCPT + bdat(msg, last=True) + b"QUIT\r\n")
    assert r.codes[-2] == 250 and len(smtp.messages()) == 2


def test_bdat_crlf_split_across_chunks_is_one_line_end_when_normalizing(smtp):
    smtp.plugins("relay", "rcpt_ok", "queue/qmail-queue " + str(smtp.root / "capture"))
    (smtp.root / "capture").write_text("#!/bin/sh\ncat > " + str(smtp.root / "got") + "\n")
    (smtp.root / "capture").chmod(0o755)
    r = smtp.run(EHLO_MAIL_RCPT + bdat(HEAD + b"one\r") + bdat(b"\ntwo\nthree\r\n", last=True) + b"QUIT\r\n")
    assert r.codes[-2] == 250, r.stdout
    assert (smtp.root / "got").read_bytes().endswith(b"\none\ntwo\nthree\n")


def test_data_hook_refusal_after_first_chunk(smtp):
    smtp.plugin("nodata", "from qpsmtpd_stdio import DENY\ndef hook_data(p, t):\n    return DENY, 'no chunks'\n")
    smtp.plugins("nodata", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(EHLO_MAIL_RCPT + bdat(HEAD) + bdat(BODY, last=True) + b"QUIT\r\n")
    assert r.codes == [220, 250, 250, 250, 554, 503, 221], r.stdout
    assert b"554 5.7.1 no chunks" in r.stdout
    assert smtp.messages() == []


def test_max_messages_421(smtp):
    smtp.write("max_messages", "2")
    one = dialogue("MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", body="Subject: n\r\n\r\nx")
    r = smtp.run(b"EHLO c\r\n" + one + b"RSET\r\n" + one + b"MAIL FROM:<a@example.org>\r\nNOOP\r\n")
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 250, 354, 250, 250, 250, 250, 354, 250, 421], r.stdout
    assert b"421 4.5.3 " in r.stdout
    assert len(smtp.messages()) == 2


@pytest.mark.parametrize("via", ["pipe", "socketpair"])
def test_smtplib_sends_raw_bdat(smtp, via):
    from test_tls import Running, SocketSMTP

    server = Running(smtp, via)
    client = SocketSMTP(server.sock)
    client.ehlo()
    assert client.has_extn("chunking") and client.esmtp_features["limits"] == "RCPTMAX=1000 MAILMAX=100"
    assert client.mail("a@example.org")[0] == 250
    assert client.rcpt("bob@example.test")[0] == 250
    # Pipelined: both chunks go out before either reply is read.
    client.send(bdat(HEAD) + bdat(BODY, last=True))
    assert client.getreply()[0] == 250
    code, text = client.getreply()
    assert code == 250 and b"Queued" in text
    client.quit()
    server.finish()
    [msg] = smtp.messages()
    assert msg.endswith(BODY.replace(b"\r\n", b"\n"))
