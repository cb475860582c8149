"""rcpt_verify: recipients checked at RCPT time against the real mailbox server: Dovecot's LMTP with real
users, and a private Postfix whose virtual_mailbox_maps lists them; answers cached in the store."""

import pytest
from conftest import dialogue
from downstream import Dovecot, Postfix, wait_for

BODY = "From: a@example.org\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: verify\r\n\r\nHello."


@pytest.fixture(scope="module")
def dovecot():
    dv = Dovecot(users=("bob", "carol"), full=())
    dv.start()
    yield dv
    dv.stop()


def send(smtp, *rcpts, **env):
    lines = ["EHLO client.example", "MAIL FROM:<a@example.org>"] + [f"RCPT TO:<{r}>" for r in rcpts] + ["DATA", "QUIT"]
    r = smtp.run(dialogue(*lines, body=BODY), **env)
    r.assert_wellformed()
    return r


def delivered(dv, user):
    new = dv.root / "mail" / user / "Maildir" / "new"
    if not new.is_dir():
        new = dv.root / "mail" / user / "new"
    return len(list(new.iterdir())) if new.is_dir() else 0


def test_unknown_user_is_refused_at_rcpt_and_gets_nothing(smtp, dovecot):
    where = f"127.0.0.1:{dovecot.port}"
    smtp.plugins("relay", f"rcpt_verify lmtp:{where}", "rcpt_ok", f"queue/lmtp {where}")
    before = delivered(dovecot, "bob")
    r = send(smtp, "bob@example.test", "nobody@example.test", "carol@example.test")
    assert r.codes == [220, 250, 250, 250, 550, 250, 354, 250, 221], r.log
    assert b"550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown" in r.stdout
    assert delivered(dovecot, "bob") == before + 1
    assert r.log.count("said 250") == 2 and "nobody@example.test: lmtp:" in r.log


def test_one_connection_asks_for_every_recipient(smtp):
    dv = Dovecot(users=("bob", "carol"), full=())
    dv.start()
    try:
        where = f"127.0.0.1:{dv.port}"
        smtp.plugins("relay", f"rcpt_verify lmtp:{where}", "rcpt_ok", f"queue/maildir {smtp.maildir}")
        assert send(smtp, "bob@example.test", "nobody@example.test", "carol@example.test").codes[3:6] == [250, 550, 250]
        log = dv.root / "dovecot.log"
        wait_for(lambda: log.read_text().count("Disconnect from") == 2, what="Dovecot to log both connections")
        assert log.read_text().count("Connect from") == 2  # the start-up probe, and one for the three RCPTs
    finally:
        dv.stop()


def test_answers_are_cached_and_a_server_down_defers(smtp):
    dv = Dovecot(users=("bob",), full=())
    dv.start()
    where = f"127.0.0.1:{dv.port}"
    smtp.plugins("relay", f"rcpt_verify lmtp:{where} negative_ttl 600", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    try:
        assert send(smtp, "bob@example.test", "nobody@example.test").codes[3:5] == [250, 550]
    finally:
        dv.stop()
    r = send(smtp, "bob@example.test", "nobody@example.test", "carol@example.test")
    assert r.codes[3:6] == [250, 550, 450], r.log  # two from the cache; carol unknown to it, and the server is gone
    assert r.log.count("from the cache") == 2
    assert b"450 4.1.1 <carol@example.test>: cannot verify the recipient now" in r.stdout


def test_relay_clients_and_other_domains_are_not_asked(smtp, dovecot):
    smtp.plugins("relay", f"rcpt_verify lmtp:127.0.0.1:{dovecot.port}", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = send(smtp, "nobody@example.test", RELAYCLIENT="")
    assert r.codes[3] == 250 and "said" not in r.log
    r = send(smtp, "someone@elsewhere.example")
    assert r.codes[3] == 550 and "said" not in r.log  # rcpt_ok's relaying denied, not ours


def test_against_postfix_with_its_recipient_map(smtp):
    pf = Postfix({"verify": ""}, users=("bob",)).start()
    try:
        smtp.plugins("relay", f"rcpt_verify smtp:{pf.address('verify')}", "rcpt_ok", f"queue/maildir {smtp.maildir}")
        r = send(smtp, "bob@example.test", "nobody@example.test")
        assert r.codes == [220, 250, 250, 250, 550, 354, 250, 221], r.log
        assert "nobody@example.test: smtp:" in r.log and "said 550" in r.log
        assert len(smtp.messages()) == 1 and pf.queued() == 0  # Postfix was asked, never sent the message
    finally:
        pf.stop()
