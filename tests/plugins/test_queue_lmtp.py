"""plugins/queue/lmtp.py against Dovecot's LMTP (into Maildirs; a full quota for partial success) and smtp-sink -L."""

import shutil

import pytest
from conftest import dialogue
from downstream import Dovecot, SmtpSink, short_tmpdir

BODY = ("From: a@example.org\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-Id: <l1@example.org>\r\n"
        "Subject: lmtp\r\n\r\nHello.\r\n..leading dot\r\n..\r\nlast line")
SENT_BODY = b"Hello.\n.leading dot\n.\nlast line\n"


@pytest.fixture(scope="module")
def dovecot():
    dv = Dovecot(users=("bob", "carol", "dave", "erin"), full=("carol",))
    dv.start()
    yield dv
    dv.stop()


def send(smtp, *rcpts, body=BODY):
    lines = ["EHLO client.example", "MAIL FROM:<a@example.org>"] + [f"RCPT TO:<{r}>" for r in rcpts] + ["DATA", "QUIT"]
    return smtp.run(dialogue(*lines, body=body))


def lmtp(smtp, *args):
    smtp.plugins("relay", "rcpt_ok", "queue/lmtp " + " ".join(args))


def final(result):
    lines = [line.decode() for line in result.lines if line[:3] != b"221"]
    code = lines[-1][:3]
    reply = []
    for line in reversed(lines):
        if line[:3] != code:
            break
        reply.insert(0, line)
    return int(code), "\n".join(reply)


def test_end_to_end_into_dovecot(smtp, dovecot):
    lmtp(smtp, dovecot.address)
    before = len(dovecot.messages("bob"))
    r = send(smtp, "bob@example.test", "dave@example.test")
    assert final(r) == (250, f"250 2.0.0 Delivered to 2 recipients via {dovecot.address}")
    for user in ("bob", "dave"):
        msg = dovecot.messages(user)[-1]
        head, body = msg.split(b"\n\n", 1)
        assert body == SENT_BODY
        assert b"by mx.example.test (qpsmtpd-stdio" in head and b"Message-Id: <l1@example.org>" in head
    assert len(dovecot.messages("bob")) == before + 1


def test_partial_success_is_250_and_names_the_undelivered(smtp, dovecot):
    smtp.plugin("report", """from qpsmtpd_stdio import LOGINFO
def hook_queue_post(plugin, txn):
    plugin.log(LOGINFO, f"undelivered: {txn.notes.get('undelivered')!r}")
""")
    smtp.plugins("relay", "rcpt_ok", f"queue/lmtp {dovecot.address}", "report")
    bob, carol = len(dovecot.messages("bob")), len(dovecot.messages("carol"))
    r = send(smtp, "bob@example.test", "carol@example.test")
    code, text = final(r)
    assert code == 250  # bob has his copy: a 4xx would make the client send it again
    assert "Delivered to 1 of 2 recipients" in text
    assert "<carol@example.test> NOT DELIVERED by" in text and "552 5.2.2" in text
    assert "<bob@example.test> NOT" not in text
    assert "NOT DELIVERED to" not in text and "<carol@example.test> NOT DELIVERED" in r.log
    assert len(dovecot.messages("bob")) == bob + 1 and len(dovecot.messages("carol")) == carol
    assert "undelivered: [('carol@example.test', '552 5.2.2 <carol@example.test> Quota exceeded" in r.log


def test_refused_recipient_at_rcpt_delivers_to_nobody(smtp, dovecot):
    lmtp(smtp, dovecot.address)
    erin = len(dovecot.messages("erin"))
    code, text = final(send(smtp, "erin@example.test", "nosuch@example.test"))
    assert code == 554 and "5.1.1 <nosuch@example.test> refused by" in text
    assert len(dovecot.messages("erin")) == erin


def test_down_then_back_exactly_once(smtp):
    dv = Dovecot(users=("bob",), full=())
    lmtp(smtp, dv.address)
    try:
        r = send(smtp, "bob@example.test")  # nothing listens yet
        assert final(r)[0] == 451 and "failed at connect" in r.log
        dv.start()
        assert final(send(smtp, "bob@example.test"))[0] == 250
        assert len(dv.messages("bob")) == 1
    finally:
        dv.stop()


def test_unix_socket_to_smtp_sink(smtp):
    where = short_tmpdir("lmtp")
    path = where / "lmtp.sock"
    try:
        with SmtpSink(lmtp=True, unix=str(path)) as sink:
            lmtp(smtp, f"unix:{path}")
            r = send(smtp, "bob@example.test", "carol@example.test")
            assert final(r) == (250, f"250 2.0.0 Delivered to 2 recipients via unix:{path}")
            [dump] = sink.dumps()
            assert dump["rcpts"] == ["<bob@example.test>", "<carol@example.test>"]
            assert dump["message"].endswith(b"\n\n" + SENT_BODY)
    finally:
        shutil.rmtree(where, ignore_errors=True)


@pytest.mark.parametrize("options,code", [
    (("-r", "rcpt"), 451), (("-f", "rcpt"), 554), (("-r", "mail"), 451), (("-f", "mail"), 554),
    (("-r", "."), 451), (("-f", "."), 554), (("-Q", "lhlo"), 451),
    (("-W", "rcpt:30"), 451), (("-W", ".:30"), 451),
])
def test_faults(smtp, options, code):
    with SmtpSink(*options, lmtp=True) as sink:
        lmtp(smtp, sink.address, "timeout 1")
        r = send(smtp, "bob@example.test", "carol@example.test")
        assert final(r)[0] == code, r.stdout
        assert b"250 2.0.0 Delivered" not in r.stdout


def test_dies_mid_data(smtp):
    big = BODY + "\r\n" + ("x" * 70 + "\r\n") * 150_000
    with SmtpSink("-A", "0", lmtp=True) as sink:
        lmtp(smtp, sink.address)
        r = send(smtp, "bob@example.test", body=big)
        assert final(r)[0] == 451 and "failed at DATA" in r.log
