"""milterclient.py, one milter conversation: verdicts, replies read over a socketpair under the timeouts, the
stages' flags, and the end-of-body changes bounded and checked as they are applied."""

import socket
import struct
import threading
import time
from types import SimpleNamespace

import pytest
from scriptedmilter import ScriptedMilter, addheader, insheader, reply

from qpsmtpd_stdio import milter, milterclient
from qpsmtpd_stdio.address import Address
from qpsmtpd_stdio.headers import Headers
from qpsmtpd_stdio.milterclient import Broken, Conversation, verdict
from qpsmtpd_stdio.transaction import Transaction

CONN = SimpleNamespace(remote_host=None, remote_ip="192.0.2.7", remote_port=4321, local_ip="192.0.2.1", tls=None,
                       hello_host=None, auth_user=None, auth_mechanism=None)


@pytest.fixture
def pair():
    """A conversation whose socket is one end of a socketpair; the test plays the milter on the other."""
    ours, theirs = socket.socketpair()
    conv = Conversation("unused", 5, 5, CONN, "mx.example.test")
    conv.sock = ours
    conv.actions, conv.protocol = milter.ALL_ACTIONS, 0
    yield conv, theirs
    theirs.close()
    if conv.sock is not None:
        conv.sock.close()


def later(sock, *pieces, pause=0.05):
    """Send each piece after a pause, from a thread: the reader sees them in separate recv() calls."""
    def run():
        for piece in pieces:
            time.sleep(pause)
            try:
                sock.sendall(piece)
            except OSError:
                return  # the test is over
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def packets(sock) -> list[tuple[bytes, bytes]]:
    """What the MTA side has sent so far, as (command, data)."""
    sock.settimeout(0.5)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    out = []
    while data:
        (length,) = struct.unpack(">I", data[:4])
        out.append((data[4:5], data[5:4 + length]))
        data = data[4 + length:]
    return out


# -- verdicts --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command, kind", [(b"c", "continue"), (b"s", "skip"), (b"a", "accept"), (b"r", "reject"),
                                           (b"t", "tempfail"), (b"d", "discard")])
def test_each_simple_reply_is_its_verdict(command, kind):
    assert verdict(milter.Reply(command, b"")).kind == kind


def test_no_reply_means_go_on():
    assert verdict(None).kind == "continue"


def test_a_reply_code_keeps_its_code_and_cleans_its_lines():
    v = verdict(milter.Reply(milter.REPLYCODE, b"451-4.7.1 first\r\n451 4.7.1 second\x01 \xff line\0"))
    assert (v.kind, v.code) == ("reply", "451")
    assert v.lines == ["4.7.1 first", "4.7.1 second  ? line"]  # each line's own code dropped, controls gone


@pytest.mark.parametrize("command", [milter.SHUTDOWN, milter.CONN_FAIL])
def test_shutdown_is_a_broken_milter(command):
    with pytest.raises(Broken, match="shut down"):
        verdict(milter.Reply(command, b""))


def test_a_change_is_no_verdict():
    with pytest.raises(Broken, match="unexpected reply"):
        verdict(milter.Reply(milter.ADDRCPT, b"<x@example.test>\0"))


# -- replies under the timeouts --------------------------------------------------------------------------

def test_a_reply_split_across_reads_and_progress_skipped(pair):
    conv, theirs = pair
    stream = milter.packet(milter.PROGRESS) + milter.packet(milter.REPLYCODE, b"550 5.7.1 no\0")
    thread = later(theirs, stream[:3], stream[3:9], stream[9:])
    got = conv.reply()
    thread.join()
    assert (got.command, got.fields) == (milter.REPLYCODE, (b"550 5.7.1 no",))


def test_progress_earns_more_time_but_never_past_the_limit(pair, monkeypatch):
    conv, theirs = pair
    monkeypatch.setattr(milterclient, "REPLY_LIMIT", 0.5)
    later(theirs, *[milter.packet(milter.PROGRESS)] * 40)  # "still working" every 50 ms for 2 s
    start = time.monotonic()
    with pytest.raises(Broken, match="timed out"):
        conv.reply(timeout=1)
    assert 0.4 < time.monotonic() - start < 1.0


def test_silence_times_out(pair):
    conv, _ = pair
    start = time.monotonic()
    with pytest.raises(Broken, match="timed out"):
        conv.reply(timeout=0.2)
    assert time.monotonic() - start < 1.0


def test_a_closed_connection_or_a_bad_packet_is_broken(pair):
    conv, theirs = pair
    theirs.sendall(struct.pack(">I", 0))
    with pytest.raises(Broken, match="packet length 0"):
        conv.reply()
    theirs.close()
    conv.reader, conv.pending = milter.Reader(), []
    with pytest.raises(Broken, match="closed the connection"):
        conv.reply()


# -- stages ----------------------------------------------------------------------------------------------

def test_a_stage_sends_its_macros_first_and_honours_the_negotiated_flags(pair):
    conv, theirs = pair
    theirs.sendall(reply(milter.CONTINUE))
    assert conv.stage(milter.HELO, milter.helo_packet("c.example"), milter.P_NOHELO, milter.P_NR_HELO,
                      {"{cipher}": "x"}).command == milter.CONTINUE
    assert packets(theirs) == [(milter.MACRO, b"H{cipher}\0x\0"), (milter.HELO, b"c.example\0")]
    conv.protocol = milter.P_NOHELO
    assert conv.stage(milter.HELO, milter.helo_packet("c"), milter.P_NOHELO, milter.P_NR_HELO) is None
    assert packets(theirs) == []  # skipped: nothing sent
    conv.protocol = milter.P_NR_HELO
    assert conv.stage(milter.HELO, milter.helo_packet("c"), milter.P_NOHELO, milter.P_NR_HELO) is None
    assert packets(theirs) == [(milter.HELO, b"c\0")]  # sent, no reply awaited


def test_a_change_before_end_of_body_is_broken(pair):
    conv, theirs = pair
    theirs.sendall(addheader("X-Early", "1"))
    with pytest.raises(Broken, match="before end of body"):
        conv.stage(milter.HELO, milter.helo_packet("c"), milter.P_NOHELO, milter.P_NR_HELO)


def test_abort_only_inside_a_transaction_and_reset_closes_when_it_cannot_be_told(pair):
    conv, theirs = pair
    conv.abort()
    assert packets(theirs) == []
    conv.in_transaction = True
    conv.abort()
    assert packets(theirs) == [(milter.ABORT, b"")] and not conv.in_transaction
    conv.in_transaction = True
    theirs.close()
    conv.sock.shutdown(socket.SHUT_WR)  # sending fails now
    conv.reset()
    assert conv.sock is None


def test_open_negotiates_and_sends_the_connect_stage():
    with ScriptedMilter({}, actions=milter.ADDHDRS | 0x8000, protocol=milter.P_NR_HDR | (1 << 30)) as m:
        conv = Conversation(f"127.0.0.1:{m.port}", 5, 5, CONN, "mx.example.test")
        assert conv.open().command == milter.CONTINUE
        conv.close()
    assert conv.actions == milter.ADDHDRS and conv.protocol == milter.P_NR_HDR  # never more than offered
    assert [c for c, _ in m.seen][:3] == [milter.OPTNEG, milter.MACRO, milter.CONNECT]
    macros = m.seen[1][1]
    assert macros.startswith(b"Cj\0mx.example.test\0") and b"_\0unknown [192.0.2.7]\0" in macros
    assert m.seen[2][1] == b"unknown\x004" + struct.pack(">H", 4321) + b"192.0.2.7\0"


def test_run_opens_first_and_a_refusal_at_connect_is_the_answer():
    ran = []
    with ScriptedMilter({}) as m:
        conv = Conversation(f"127.0.0.1:{m.port}", 5, 5, CONN, "mx")
        assert conv.run(lambda c: ran.append(c) or "step's") == "step's" and ran == [conv]
        assert conv.run(lambda c: "again") == "again"  # open already: no second connect
        conv.close()
    assert [c for c, _ in m.seen].count(milter.CONNECT) == 1
    with ScriptedMilter({b"C": [reply(milter.TEMPFAIL)]}) as m:
        conv.where = f"127.0.0.1:{m.port}"
        assert conv.run(ran.append).command == milter.TEMPFAIL and len(ran) == 1  # reopened; step not run
        conv.close()


def test_a_milter_reopened_after_a_failed_abort_hears_helo_again_and_no_abort():
    conn = SimpleNamespace(**{**vars(CONN), "hello_host": "client.example"})
    txn = Transaction()
    sender = Address.parse("a@example.org")
    with ScriptedMilter({}) as m:
        conv = Conversation(f"127.0.0.1:{m.port}", 5, 5, conn, "mx")
        conv.run(lambda c: c.helo("client.example"))
        conv.run(lambda c: c.mail(txn, sender, {}))
        conv.close()  # what reset() does when the ABORT cannot be sent
        conv.run(lambda c: c.mail(txn, sender, {}))
        conv.close()
    commands = [c for c, _ in m.seen if c != milter.MACRO]
    assert commands.count(milter.HELO) == 2 and milter.ABORT not in commands
    assert commands[-3:] == [milter.HELO, milter.MAIL, milter.QUIT]


def test_open_to_nothing_is_broken():
    conv = Conversation("unix:/nonexistent/milter.sock", 5, 1, CONN, "mx")
    with pytest.raises(Broken, match="connect:"):
        conv.open()


# -- end of body -----------------------------------------------------------------------------------------

def test_at_most_max_changes(pair):
    conv, theirs = pair
    flood = b"".join(addheader(f"X-F{i}", "v") for i in range(milterclient.MAX_CHANGES))
    later(theirs, flood + reply(milter.ACCEPT), pause=0)
    got, changes, body = conv.end_of_body()
    assert (got.command, len(changes), body) == (milter.ACCEPT, 1000, None)
    later(theirs, flood + addheader("X-One-Too-Many", "v") + reply(milter.ACCEPT), pause=0)
    with pytest.raises(Broken, match="more than 1000 changes"):
        conv.end_of_body()


def test_a_replacement_body_is_bounded(pair, monkeypatch):
    conv, theirs = pair
    monkeypatch.setattr(milterclient, "MAX_BODY", 10)
    theirs.sendall(reply(milter.REPLBODY, b"12345") + reply(milter.REPLBODY, b"67890") + reply(milter.CONTINUE))
    assert conv.end_of_body()[2] == b"1234567890"  # pieces joined, at the bound exactly
    theirs.sendall(reply(milter.REPLBODY, b"123456") + reply(milter.REPLBODY, b"78901") + reply(milter.CONTINUE))
    with pytest.raises(Broken, match="body over 10 octets"):
        conv.end_of_body()


def test_the_body_bound_is_64_mib():
    assert milterclient.MAX_BODY == 64 << 20 and milterclient.MAX_CHANGES == 1000


def txn() -> Transaction:
    t = Transaction()
    t.header = Headers.parse(b"From: a@example.org\r\nSubject: s")
    return t


def changes(*raw: bytes) -> list[milter.Reply]:
    return milter.Reader().feed(b"".join(raw))


def apply(conv, t, *raw, body=None):
    said = []
    conv.apply(t, changes(*raw), body, said.append)
    return said


def test_header_changes_are_applied_byte_for_byte(pair):
    conv, _ = pair
    t = txn()
    apply(conv, t, insheader(0, "X-Top", "first\n\tfolded"), addheader("X-End", "last"))
    assert t.header.as_bytes(b"\r\n").startswith(b"X-Top: first\r\n\tfolded\r\nFrom: a@example.org\r\n")
    assert t.header.raw_fields()[-1] == ("X-End", b"X-End: last")
    conv.protocol = milter.P_HDR_LEADSPC  # the value as sent: no space added
    apply(conv, t, addheader("X-Tight", "v"))
    assert t.header.raw_fields()[-1] == ("X-Tight", b"X-Tight:v")


@pytest.mark.parametrize("bad", [addheader("X-Evil", "one\nInjected: yes"), addheader("Bad Name", "x"),
                                 addheader("X-Ctl", "a\x01b")])
def test_a_malformed_header_is_broken_and_not_applied(pair, bad):
    conv, _ = pair
    t = txn()
    with pytest.raises(Broken, match="malformed change"):
        apply(conv, t, bad)
    assert t.header.names() == ["From", "Subject"]


def test_only_negotiated_changes(pair):
    conv, _ = pair
    conv.actions = milter.ADDHDRS
    t = txn()
    with pytest.raises(Broken, match="did not negotiate"):
        apply(conv, t, addheader("X-A", "1"), reply(milter.ADDRCPT, b"<c@example.test>\0"))
    assert t.header.get("X-A") == "1" and t.recipients == []  # in order: what came before stays, as it did
    with pytest.raises(Broken, match="replaced the body"):
        apply(conv, txn(), body=b"new\r\n")


def test_envelope_changes_and_quarantine(pair):
    conv, _ = pair
    t = txn()
    t.add_recipient("bob@example.test")
    said = apply(conv, t, reply(milter.ADDRCPT, b"<carol@example.test>\0"), reply(milter.DELRCPT, b"<bob@example.test>\0"),
                 reply(milter.CHGFROM, b"<bounces@example.org>\0"), reply(milter.QUARANTINE, b"odd\x01 one\0"))
    assert [str(r.address) for r in t.recipients] == ["carol@example.test"]
    assert t.sender.address == "bounces@example.org" and said == ["odd  one"]
