"""plugins/badrcptto.py: config/badrcptto entries (address, @host, regex, reason) and its arguments."""

import pytest
from conftest import dialogue, simple_session

BADRCPTTO = """\
nobody@example.test
@evil.example.test
root@example.test   sorry, root reads no mail here
^[^@]*%
"""


@pytest.fixture
def brt(smtp):
    smtp.write("badrcptto", BADRCPTTO)
    smtp.write("rcpthosts", "example.test\n.example.test")
    smtp.plugins("relay", "badrcptto", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    return smtp


def rcpt(smtp, *rcpts, **env):
    lines = ["EHLO client.example", "MAIL FROM:<a@example.org>"] + [f"RCPT TO:<{r}>" for r in rcpts] + ["QUIT"]
    return smtp.run(dialogue(*lines), **env)


def test_listed_address_refused_with_5_1_1(brt):
    r = rcpt(brt, "nobody@example.test", "NoBody@EXAMPLE.test", "bob@example.test")
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 550, 550, 250, 221]
    assert b"550 5.1.1 mail to nobody@example.test not accepted here\r\n" in r.stdout
    assert b"550 5.1.1 mail to NoBody@EXAMPLE.test not accepted here\r\n" in r.stdout


def test_host_entry_matches_that_host_only(brt):
    r = rcpt(brt, "x@evil.example.test", "x@EVIL.example.test", "x@sub.evil.example.test")
    assert r.codes == [220, 250, 250, 550, 550, 250, 221]


def test_reason_is_the_reply_text(brt):
    assert b"550 5.1.1 sorry, root reads no mail here\r\n" in rcpt(brt, "root@example.test").stdout


def test_regex_entry(brt):
    r = rcpt(brt, "a%b@example.test", "ab@example.test")
    assert r.codes == [220, 250, 250, 550, 250, 221]


def test_refused_recipient_is_not_delivered(brt):
    r = brt.run(dialogue("EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<nobody@example.test>",
                         "RCPT TO:<bob@example.test>", "DATA", "QUIT", body="Subject: x\r\n\r\nhi"))
    assert r.codes == [220, 250, 250, 550, 250, 354, 250, 221]
    [msg] = brt.messages()
    assert b"Delivered-To: bob@example.test\n" in msg and b"nobody" not in msg


def test_reject_type_temp_uses_4_1_1(brt):
    brt.plugins("badrcptto reject_type temp", "rcpt_ok")
    assert b"450 4.1.1 mail to nobody@example.test not accepted here\r\n" in rcpt(brt, "nobody@example.test").stdout


def test_reject_0_only_logs(brt):
    brt.plugins("badrcptto reject 0", "rcpt_ok")
    r = rcpt(brt, "nobody@example.test")
    assert r.codes == [220, 250, 250, 250, 221]
    assert "fail, tolerated" in r.log


def test_relay_client_not_checked(brt):
    brt.plugins("badrcptto", "relay", "rcpt_ok")
    assert rcpt(brt, "nobody@example.test", RELAYCLIENT="").codes == [220, 250, 250, 250, 221]


def test_bad_pattern_skipped(brt):
    brt.write("badrcptto", "^[unclosed\nnobody@example.test\n")
    r = rcpt(brt, "nobody@example.test")
    assert r.codes[3] == 550
    assert "bad pattern '^[unclosed' skipped" in r.log


def test_empty_config_accepts(smtp):
    smtp.plugins("badrcptto", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(simple_session())
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
