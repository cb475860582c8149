"""plugins/queue/smtp-forward.py against a private Postfix (end to end into a Maildir) and smtp-sink (faults)."""

import subprocess
import sys

import pytest
from conftest import BIN, dialogue
from downstream import Postfix, SmtpSink, free_port

USERS = ("bob", "carol", "tls", "plain", "xc", "xf", "mixed", "rcpt4", "rcpt5", "data4", "data5", "down", "pf8", "tlsv")
BODY = ("From: a@example.org\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-Id: <m1@example.org>\r\n"
        "Subject: relay\r\n\r\nHello.\r\n..leading dot\r\n..\r\n...\r\nlast line")
SENT_BODY = b"Hello.\n.leading dot\n.\n..\nlast line\n"  # dot-unstuffed, LF as stored


@pytest.fixture(scope="module")
def postfix():
    pf = Postfix({
        "ok": "",
        "tls": "-o smtpd_tls_security_level=may",
        "defer_rcpt": "-o smtpd_recipient_restrictions=defer",
        "reject_rcpt": "-o smtpd_recipient_restrictions=reject",
        "defer_data": "-o smtpd_end_of_data_restrictions=defer",
        "reject_data": "-o smtpd_end_of_data_restrictions=reject",
    }, users=USERS)
    pf.start()
    yield pf
    pf.stop()


def send(smtp, *rcpts, body=BODY, sender="a@example.org"):
    lines = ["EHLO client.example", f"MAIL FROM:<{sender}>"] + [f"RCPT TO:<{r}>" for r in rcpts] + ["DATA", "QUIT"]
    return smtp.run(dialogue(*lines, body=body))


def forward(smtp, *args):
    smtp.plugins("relay", "rcpt_ok", "queue/smtp-forward " + " ".join(args))


def final(result):
    """The reply to the end of DATA (the one before QUIT's 221)."""
    lines = [line for line in result.lines if line[:3] != b"221"]
    code = lines[-1][:3]
    reply = []
    for line in reversed(lines):
        if line[:3] != code:
            break
        reply.insert(0, line)
    return int(code), b"\r\n".join(reply).decode()


def test_end_to_end_into_postfix_maildir(smtp, postfix):
    forward(smtp, postfix.address("ok").replace(":", " "))  # qpsmtpd's form: HOST PORT
    r = send(smtp, "bob@example.test", "carol@example.test")
    code, text = final(r)
    assert code == 250 and f"Queued by {postfix.address('ok')}: 2.0.0 Ok: queued as" in text, r.stdout
    for user in ("bob", "carol"):
        [msg] = postfix.messages(user)
        head, body = msg.split(b"\n\n", 1)
        assert body == SENT_BODY
        ours = head.split(b"\nReceived: ")[2]  # below Postfix's own
        assert ours.startswith(b"from client.example (unknown [192.0.2.10])\n\tby mx.example.test (qpsmtpd-stdio/")
        assert head.startswith(b"Return-Path: <a@example.org>\n")
        assert b"Message-Id: <m1@example.org>" in head


def test_null_sender_and_leading_dots_survive(smtp, postfix):
    forward(smtp, postfix.address("ok"))
    r = send(smtp, "pf8@example.test", sender="")
    assert final(r)[0] == 250
    [msg] = postfix.messages("pf8")
    assert msg.startswith(b"Return-Path: <>\n") and msg.endswith(b"\n\n" + SENT_BODY)


def test_starttls_when_offered_and_not_with_tls_none(smtp, postfix):
    forward(smtp, postfix.address("tls"))
    assert final(send(smtp, "tls@example.test"))[0] == 250
    forward(smtp, postfix.address("tls"), "tls none")
    assert final(send(smtp, "plain@example.test"))[0] == 250
    [with_tls] = postfix.messages("tls")
    [plain] = postfix.messages("plain")
    assert b"with ESMTPS id" in with_tls.split(b"\nReceived: ", 2)[1]  # RFC 3848: S = TLS
    assert b"with ESMTP id" in plain.split(b"\nReceived: ", 2)[1]


def test_tls_verify_checks_the_certificate(smtp, postfix):
    forward(smtp, postfix.address("tls"), "tls verify")  # the system's CAs do not know this one
    r = send(smtp, "tlsv@example.test")
    assert final(r)[0] == 451 and "CERTIFICATE_VERIFY_FAILED" in r.log
    forward(smtp, postfix.address("tls"), f"tls verify tls_ca {postfix.cert}")
    assert final(send(smtp, "tlsv@example.test"))[0] == 250
    [msg] = postfix.messages("tlsv")
    assert b"with ESMTPS id" in msg.split(b"\nReceived: ", 2)[1]


def test_tls_encrypt_refuses_a_host_without_starttls(smtp, postfix):
    forward(smtp, postfix.address("ok"), "tls encrypt")
    r = send(smtp, "plain@example.test")
    assert final(r)[0] == 451 and "STARTTLS is not offered" in r.log


def test_xclient_passes_the_original_client(smtp, postfix):
    host, port = postfix.address("ok").split(":")
    forward(smtp, host, port, "xclient")
    assert final(send(smtp, "xc@example.test"))[0] == 250
    [msg] = postfix.messages("xc")
    postfix_received = msg.split(b"\nReceived: ", 2)[1]
    assert postfix_received.startswith(b"from client.example (unknown [192.0.2.10])"), postfix_received[:200]


def test_xforward_by_default_where_advertised(smtp, postfix):
    forward(smtp, postfix.address("ok"))
    assert final(send(smtp, "xf@example.test"))[0] == 250
    postfix.messages("xf")
    assert "orig_client=unknown[192.0.2.10]" in postfix.maillog()


def test_one_refused_recipient_refuses_the_whole_message(smtp, postfix):
    forward(smtp, postfix.address("ok"))
    r = send(smtp, "mixed@example.test", "nosuch@example.test")
    code, text = final(r)
    assert code == 554
    assert "5.1.1 <nosuch@example.test> refused by" in text and "User unknown" in text
    assert "mixed@example.test" not in text
    assert postfix.messages("mixed") == []  # all or nothing: no copy for the accepted one either


@pytest.mark.parametrize("listener,user,code", [
    ("defer_rcpt", "rcpt4", 451), ("reject_rcpt", "rcpt5", 554),
    ("defer_data", "data4", 451), ("reject_data", "data5", 554), (None, "down", 451),
])
def test_fault_then_retry_delivers_exactly_once(smtp, postfix, listener, user, code):
    address = postfix.address(listener) if listener else f"127.0.0.1:{free_port()}"  # None: nothing listening
    forward(smtp, address)
    r = send(smtp, f"{user}@example.test")
    assert final(r)[0] == code, r.stdout
    assert b"\r\n250 2.0.0 Queued" not in r.stdout
    assert postfix.messages(user) == []
    forward(smtp, postfix.address("ok"))  # the downstream is back
    assert final(send(smtp, f"{user}@example.test"))[0] == 250
    assert len(postfix.messages(user)) == 1


def test_reply_lists_each_refused_recipient(smtp, postfix):
    forward(smtp, postfix.address("reject_rcpt"))
    code, text = final(send(smtp, "bob@example.test", "carol@example.test"))
    assert code == 554
    assert "<bob@example.test> refused by" in text and "<carol@example.test> refused by" in text


def test_queue_pre_and_queue_post_around_the_relay(smtp):
    smtp.plugin("hold", """from qpsmtpd_stdio import DENYSOFT, LOGINFO
def hook_queue_pre(plugin, txn):
    if plugin.args:
        return DENYSOFT, "held"
def hook_queue_post(plugin, txn):
    plugin.log(LOGINFO, "queue_post ran for " + txn.id)
""")
    with SmtpSink() as sink:
        smtp.plugins("relay", "rcpt_ok", "hold yes", f"queue/smtp-forward {sink.address}")
        r = send(smtp, "bob@example.test")
        assert final(r)[0] == 451 and sink.dumps() == [] and "queue_post ran" not in r.log
        smtp.plugins("relay", "rcpt_ok", "hold", f"queue/smtp-forward {sink.address}")
        r = send(smtp, "bob@example.test")
        assert final(r)[0] == 250 and len(sink.dumps()) == 1 and "queue_post ran for" in r.log


# smtp-sink: faults a real MTA will not make on demand ------------------------------
def test_hosts_tried_in_order(smtp):
    with SmtpSink("-Q", "connect") as closing, SmtpSink() as good:
        dead = f"127.0.0.1:{free_port()}"
        forward(smtp, f"{dead},{closing.address},{good.address}")
        r = send(smtp, "bob@example.test")
        assert final(r)[0] == 250 and f"Queued by {good.address}" in final(r)[1]
        assert f"{dead} failed at connect" in r.log and f"{closing.address} failed at greeting: 421" in r.log
        [dump] = good.dumps()
        assert dump["mail"] == "<a@example.org>" and dump["rcpts"] == ["<bob@example.test>"]
        assert dump["helo"] == "mx.example.test"
        assert dump["message"].endswith(b"\n\n" + SENT_BODY)
        assert closing.dumps() == []


def test_dies_mid_data_then_retry_once(smtp):
    big = BODY + "\r\n" + ("x" * 70 + "\r\n") * 150_000  # 10 MB: more than the socket buffers hold
    with SmtpSink("-A", "0") as aborting:
        forward(smtp, aborting.address)
        r = send(smtp, "bob@example.test", body=big)
        assert final(r)[0] == 451, r.stdout
        assert "failed at DATA" in r.log
    with SmtpSink() as good:
        forward(smtp, good.address)
        assert final(send(smtp, "bob@example.test", body=big))[0] == 250
        assert len(good.dumps()) == 1


@pytest.mark.parametrize("option", ["connect:30", "data:30", ".:30"])
def test_hanging_downstream_times_out_with_451(smtp, option):
    with SmtpSink("-W", option) as hanging:
        forward(smtp, hanging.address, "timeout 1")
        r = send(smtp, "bob@example.test")
        assert final(r)[0] == 451 and "timed out" in r.log


def test_dies_after_the_dot_without_a_reply(smtp):
    # The RFC 1047 window: the sink keeps what it read, we cannot know, so 451 and never 250.
    with SmtpSink("-q", ".") as dying, SmtpSink() as backup:
        forward(smtp, f"{dying.address},{backup.address}")
        r = send(smtp, "bob@example.test")
        assert final(r)[0] == 451 and "failed at end of data: connection closed" in r.log
        assert backup.dumps() == []  # once the body went out, no second host is tried


def test_bare_line_ends_kept_by_config_cannot_smuggle_downstream(smtp):
    smtp.write("bare_newline", "keep")
    body = "Subject: s\r\n\r\nline1\n.\nMAIL FROM:<evil@example.org>\rX\r.\r\n..\rlast"
    with SmtpSink() as sink:
        forward(smtp, sink.address)
        assert final(send(smtp, "bob@example.test", body=body))[0] == 250
        [dump] = sink.dumps()  # one transaction, the whole message, each bare CR or LF sent as CRLF
        assert dump["message"].endswith(b"\n\nline1\n.\nMAIL FROM:<evil@example.org>\nX\n.\n.\nlast\n")


def test_deferred_rcpt_tries_next_host(smtp):
    with SmtpSink("-r", "rcpt") as deferring, SmtpSink("-f", "rcpt") as rejecting:
        forward(smtp, f"{deferring.address},{rejecting.address}")
        r = send(smtp, "bob@example.test")
        code, text = final(r)
        assert code == 554 and f"<bob@example.test> refused by {rejecting.address}: 500 5.3.0" in text


def test_body_is_streamed_not_held_in_memory(smtp, tmp_path):
    """A 24 MB message passes through in.qpsmtpd with a peak RSS below its size (about 15 MB when idle)."""
    smtp.write("databytes", "0")
    body = BODY + "\r\n" + ("y" * 78 + "\r\n") * 300_000
    (tmp_path / "input").write_bytes(dialogue("EHLO client.example", "MAIL FROM:<a@example.org>",
                                              "RCPT TO:<bob@example.test>", "DATA", "QUIT", body=body))
    del body
    # A small parent reports its child's peak RSS; the input comes from a file, so no copy of it
    # is inherited across fork (ru_maxrss would count it).
    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, "
             "stderr=subprocess.DEVNULL); sys.stdout.write(p.stdout.decode() + '\\nRSS %d' % "
             "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    with SmtpSink() as sink, open(tmp_path / "input", "rb") as stdin:
        forward(smtp, sink.address)
        out = subprocess.run([sys.executable, "-c", probe, sys.executable, str(BIN)], stdin=stdin,
                             capture_output=True, env=smtp.env(), timeout=120).stdout.decode()
        assert "250 2.0.0 Queued by" in out
        rss_kib = int(out.rsplit("RSS ", 1)[1])
        assert rss_kib < 24 * 1024, f"peak RSS {rss_kib} KiB for a 24 MB message"
        [dump] = sink.dumps()
        assert len(dump["message"]) > 23_000_000 and dump["message"].endswith(b"y" * 78 + b"\n\n")
