"""plugins/loop.py: Received + Delivered-To fields (ours included) at or over MAX → 554 5.4.6 Too many hops."""

import pytest
from conftest import dialogue


def deliver(smtp, received=0, delivered=0, body_extra=""):
    head = "".join(f"Received: from hop{i}.example by x; Mon, 1 Jan 2024 00:00:00 +0000\r\n" for i in range(received))
    head += "".join(f"Delivered-To: u{i}@example.test\r\n" for i in range(delivered))
    body = head + "From: a@example.org\r\nSubject: x\r\n\r\n" + body_extra + "hi"
    return smtp.run(dialogue("EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA",
                             "QUIT", body=body))


@pytest.fixture
def loop(smtp):
    smtp.plugins("loop 5", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    return smtp


def test_under_the_limit_delivered(loop):
    r = deliver(loop, received=2, delivered=1)  # + our Received = 4 hops
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    assert len(loop.messages()) == 1


def test_at_the_limit_refused(loop):
    r = deliver(loop, received=2, delivered=2)  # + our Received = 5 hops
    assert r.codes == [220, 250, 250, 250, 354, 554, 221]
    assert b"554 5.4.6 Too many hops\r\n" in r.stdout
    assert loop.messages() == []


def test_fields_in_the_body_do_not_count(loop):
    r = deliver(loop, received=1, body_extra="Received: a\r\nReceived: b\r\nReceived: c\r\nReceived: d\r\n")
    assert r.codes[5] == 250


def test_default_limit_is_100(smtp):
    smtp.plugins("loop", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    assert deliver(smtp, received=98).codes[5] == 250
    assert deliver(smtp, received=99).codes[5] == 554


def test_bad_argument_uses_default(smtp):
    smtp.plugins("loop lots", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = deliver(smtp, received=10)
    assert r.codes[5] == 250 and "invalid max_hops 'lots'; using 100" in r.log
