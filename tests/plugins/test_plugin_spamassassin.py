"""spamassassin: a real spamd (Debian's spamd package) on loopback, GTUBE for spam, over TCP and a unix socket."""

import email.utils

import pytest
from conftest import SMTPConfig, dialogue
from engines import GTUBE, Silent, Spamd, engine, free_port

from qpsmtpd_stdio.testing import Harness

HAM = (f"From: a@example.org\nTo: bob@example.test\nDate: {email.utils.formatdate()}\n"
       "Message-ID: <lunch.1@example.org>\nSubject: lunch\n\nSee you at noon.")
SPAM = HAM.replace("See you at noon.", GTUBE)


@pytest.fixture(scope="module")
def spamd():
    yield from engine(Spamd)


@pytest.fixture
def smtp(spamd, tmp_path):
    h = Harness(tmp_path, plugins=["relay", f"spamassassin spamd_socket 127.0.0.1:{spamd.port}", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    return h


def send(h, body, **kw):
    return h.run("EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                 body=body, **kw)


def test_gtube_is_tagged_and_ham_is_not(smtp):
    r = send(smtp, SPAM)
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    header = r.queued[0].header
    assert header.get("X-Spam-Flag") == "YES"
    assert header.get("X-Spam-Status").startswith("Yes, score=")
    assert "GTUBE" in header.get("X-Spam-Status")
    assert header.names()[0].startswith("X-Spam-")  # on top of the message
    r = send(smtp, HAM)
    assert r.queued[0].header.get("X-Spam-Status").startswith("No, score=")
    assert r.queued[0].header.get("X-Spam-Flag") is None


def test_gtube_over_the_reject_threshold_is_refused(smtp, spamd):
    smtp.plugins = ["relay", f"spamassassin reject 20 spamd_socket 127.0.0.1:{spamd.port}", "rcpt_ok"]
    r = send(smtp, SPAM)
    assert r.replies[5].code == 554
    assert r.replies[5].text == "5.7.1 Spam score exceeded threshold"
    assert r.queued == []
    assert send(smtp, HAM).codes[5] == 250
    smtp.plugins = ["relay", f"spamassassin reject 20 reject_type temp spamd_socket 127.0.0.1:{spamd.port}", "rcpt_ok"]
    r = send(smtp, SPAM)
    assert r.replies[5].code == 451 and r.replies[5].text == "4.7.1 Spam score exceeded threshold"
    smtp.plugins = ["relay", f"spamassassin reject 2000 spamd_socket 127.0.0.1:{spamd.port}", "rcpt_ok"]
    assert send(smtp, SPAM).codes[5] == 250  # GTUBE scores about 1000


def test_forged_spam_headers_are_renamed_dropped_or_kept(smtp, spamd):
    forged = "X-Spam-Status: No, score=-100\nX-Spam-Flag: NO\nX-Spam-Custom: mine\n" + SPAM
    header = send(smtp, forged).queued[0].header  # rename, the default (qpsmtpd's)
    assert header.get_all("X-Spam-Flag") == ["YES"] and header.get("X-Old-Spam-Flag") == "NO"
    assert header.get("X-Old-Spam-Custom") == "mine" and header.count("X-Spam-Status") == 1
    smtp.plugins = ["relay", f"spamassassin leave_old_headers drop spamd_socket 127.0.0.1:{spamd.port}", "rcpt_ok"]
    header = send(smtp, forged).queued[0].header
    assert header.get_all("X-Spam-Flag") == ["YES"]
    assert header.get("X-Spam-Custom") is None and header.get("X-Old-Spam-Custom") is None
    smtp.plugins = ["relay", f"spamassassin leave_old_headers keep spamd_socket 127.0.0.1:{spamd.port}", "rcpt_ok"]
    assert send(smtp, forged).queued[0].header.get("X-Spam-Custom") == "mine"


def test_unix_socket_subject_munging_and_notes(smtp, spamd):
    smtp.plugins = ["relay", f"spamassassin munge_subject_threshold 5 spamd_socket {spamd.socket}", "rcpt_ok"]
    smtp.config("subject_prefix", "[SPAM]")
    r = send(smtp, SPAM)
    assert r.queued[0].header.get("Subject") == "[SPAM] lunch"
    assert r.queued[0].header.get("X-Spam-Flag") == "YES"
    assert r.connection.notes["karma"] == -1
    assert send(smtp, HAM).queued[0].header.get("Subject") == "lunch"


def test_headers_none_adds_nothing_but_keeps_the_result(smtp, spamd):
    smtp.plugin("show", "def hook_queue_post(plugin, txn):\n"
                        "    plugin.connection.notes['sa'] = txn.notes.get('spamassassin')\n")
    smtp.plugins = ["relay", f"spamassassin headers none spamd_socket 127.0.0.1:{spamd.port}", "rcpt_ok", "show"]
    r = send(smtp, SPAM)
    assert not [n for n in r.queued[0].header.names() if n.lower().startswith("x-spam")]
    result = r.connection.notes["sa"]
    assert result["is_spam"] is True and result["score"] > 100 and result["required"] == 5.0
    assert "GTUBE" in result["tests"]


def test_relay_clients_are_not_scanned(smtp):
    r = send(smtp, SPAM, relay_client=True)
    assert r.codes[5] == 250 and r.queued[0].header.get("X-Spam-Status") is None


@pytest.mark.parametrize("where", ["refused", "silent", "nosocket"])
def test_spamd_down_fails_open_or_defers(tmp_path, where):
    silent = Silent() if where == "silent" else None
    target = {"refused": f"127.0.0.1:{free_port()}", "silent": f"127.0.0.1:{silent and silent.port}",
              "nosocket": str(tmp_path / "missing.sock")}[where]
    h = Harness(tmp_path, plugins=["relay", f"spamassassin reject 5 timeout 1 spamd_socket {target}", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    try:
        r = send(h, SPAM)
        assert r.codes == [220, 250, 250, 250, 354, 250, 221]
        assert r.queued[0].header.get("X-Spam-Status") == "Unknown, spamd unavailable"
        assert "spamd" in r.log_text
        h.plugins = ["relay", f"spamassassin defer_on_error 1 timeout 1 spamd_socket {target}", "rcpt_ok"]
        r = send(h, SPAM)
        assert r.replies[5].code == 451 and r.replies[5].text == "4.3.0 Unable to scan for spam, try again later"
        assert r.queued == []
    finally:
        if silent:
            silent.close()


def test_real_binary_refuses_gtube(spamd, tmp_path):
    cfg = SMTPConfig(tmp_path)
    cfg.plugins("relay", f"spamassassin reject 10 spamd_socket 127.0.0.1:{spamd.port}", "rcpt_ok",
                f"queue/maildir {cfg.maildir}")
    body = SPAM.replace("\n", "\r\n")
    r = cfg.run(dialogue("EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                         body=body))
    assert r.codes == [220, 250, 250, 250, 354, 554, 221]
    assert b"554 5.7.1 Spam score exceeded threshold" in r.lines
    assert cfg.messages() == []
    r = cfg.run(dialogue("EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                         body=HAM.replace("\n", "\r\n")))
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    assert b"\nX-Spam-Status: No, score=" in cfg.messages()[0]
