"""plugins/headers.py: required fields, fields allowed once (RFC 5322 3.6), Date past/future, reject arguments."""

import calendar
import time

import pytest
from conftest import REPO, dialogue

GOOD = "From: a@example.org\r\nDate: {date}\r\nSubject: test\r\n\r\nHello."


def now_date(offset_days=0.0):
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(time.time() + offset_days * 86400))


def send(smtp, body, **env):
    return smtp.run(dialogue("EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA",
                             "QUIT", body=body), **env)


@pytest.fixture
def hdr(smtp):
    smtp.plugins("headers", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    return smtp


def test_good_message_delivered(hdr):
    r = send(hdr, GOOD.format(date=now_date()))
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    assert len(hdr.messages()) == 1


def test_default_requires_from_as_qpsmtpd_and_date_on_request(hdr):
    r = send(hdr, "Subject: x\r\n\r\nhi")
    r.assert_wellformed()
    assert r.codes[5] == 554
    assert r.lines[-2] == b"554 5.7.1 We require a valid From header"  # one line: no Date asked for
    r = send(hdr, "From: a@example.org\r\nSubject: x\r\n\r\nhi")
    assert r.codes[5] == 250 and len(hdr.messages()) == 1  # qpsmtpd takes it too
    hdr.plugins("headers require From,Date", "relay", "rcpt_ok", f"queue/maildir {hdr.maildir}")
    r = send(hdr, "Subject: x\r\n\r\nhi")
    assert b"554-5.7.1 We require a valid From header\r\n554 5.7.1 We require a valid Date header\r\n" in r.stdout
    assert len(hdr.messages()) == 1


def test_empty_value_is_missing(hdr):
    r = send(hdr, f"From: \r\nDate: {now_date()}\r\n\r\nhi")
    assert b"554 5.7.1 We require a valid From header\r\n" in r.stdout


def test_require_argument(hdr):
    hdr.plugins("headers require From,Subject,Message-ID", "relay", "rcpt_ok", f"queue/maildir {hdr.maildir}")
    r = send(hdr, "From: a@example.org\r\nSubject: x\r\n\r\nhi")  # no Date: not required now
    assert r.lines[-2] == b"554 5.7.1 We require a valid Message-ID header"


@pytest.mark.parametrize("field", ["Date", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Message-Id",
                                   "In-Reply-To", "References", "Subject"])
def test_singular_fields_once(hdr, field):
    body = GOOD.format(date=now_date()).replace("\r\n\r\n", f"\r\n{field.upper()}: <x@example.org>\r\n\r\n")
    if field not in ("Date", "From", "Subject"):
        body = body.replace("\r\n\r\n", f"\r\n{field}: <y@example.org>\r\n\r\n", 1)
    r = send(hdr, body)
    assert f"554 5.7.1 Only one {field} header allowed. See RFC 5322, Section 3.6".encode() in r.stdout


def test_repeatable_fields_allowed(hdr):
    body = GOOD.format(date=now_date()).replace("\r\n\r\n", "\r\nComments: a\r\nComments: b\r\nKeywords: c\r\n"
                                                "Keywords: d\r\n\r\n")
    assert send(hdr, body).codes[5] == 250


def test_empty_message_refused(hdr):
    r = hdr.run(dialogue("EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA")
                + b".\r\nQUIT\r\n")
    assert b"554 5.7.1 You must send some data first\r\n" in r.stdout


def test_date_past_and_future(hdr):
    hdr.plugins("headers future 2 past 15", "relay", "rcpt_ok", f"queue/maildir {hdr.maildir}")
    assert b"554 5.7.1 The Date header is too far in the past\r\n" in send(hdr, GOOD.format(date=now_date(-16))).stdout
    assert b"554 5.7.1 The Date header is too far in the future\r\n" in send(hdr, GOOD.format(date=now_date(3))).stdout
    assert send(hdr, GOOD.format(date=now_date(-14))).codes[5] == 250
    assert send(hdr, GOOD.format(date=now_date(1))).codes[5] == 250


def test_unparseable_date_not_judged(hdr):
    hdr.plugins("headers past 1", "relay", "rcpt_ok", f"queue/maildir {hdr.maildir}")
    r = send(hdr, GOOD.format(date="the day before yesterday"))
    assert r.codes[5] == 250 and "date not parseable" in r.log


def test_reject_0_and_temp(hdr):
    hdr.plugins("headers reject 0", "relay", "rcpt_ok", f"queue/maildir {hdr.maildir}")
    r = send(hdr, "Subject: x\r\n\r\nhi")
    assert r.codes[5] == 250 and "fail, tolerated: We require a valid From header" in r.log
    hdr.plugins("headers reject_type temp", "relay", "rcpt_ok", f"queue/maildir {hdr.maildir}")
    r = send(hdr, "Subject: x\r\n\r\nhi")
    assert r.codes[5] == 451 and b"451 4.7.1 We require a valid From header\r\n" in r.stdout


def test_relay_client_not_checked(hdr):
    assert send(hdr, "Subject: x\r\n\r\nhi", RELAYCLIENT="").codes[5] == 250


def test_plugin_does_not_import_email():
    assert "import email" not in (REPO / "plugins" / "headers.py").read_text()


# parse_date, called directly -------------------------------------------------
def load():
    path = REPO / "plugins" / "headers.py"
    namespace = {"__name__": "plugin_under_test"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace["parse_date"]


@pytest.mark.parametrize("text, expected", [
    ("Mon, 1 Jan 2024 00:00:00 +0000", (2024, 1, 1, 0, 0, 0)),
    ("Tue, 24 Nov 2026 22:28:41 +0100", (2026, 11, 24, 21, 28, 41)),
    ("24 Nov 2026 22:28 -0230", (2026, 11, 25, 0, 58, 0)),
    ("Thu, 29 Feb 2024 23:59:60 GMT", (2024, 2, 29, 23, 59, 60)),
    ("Fri, 2 Feb 24 10:00:00 EST", (2024, 2, 2, 15, 0, 0)),
    ("2 Feb 99 10:00:00 Z", (1999, 2, 2, 10, 0, 0)),
    ("2 Feb 124 10:00:00 +0000", (2024, 2, 2, 10, 0, 0)),
    ("Wed ,  3 (comment) Jul 2024 12:00:00 +0000 (UTC)", (2024, 7, 3, 12, 0, 0)),
    ("Sat, 1 March 1969 00:00:00 +0000", (1969, 3, 1, 0, 0, 0)),
])
def test_parse_date(text, expected):
    assert load()(text) == calendar.timegm(expected + (0, 0, 0))


@pytest.mark.parametrize("text", ["", "yesterday", "Mon, 32 Jan 2024 00:00:00 +0000", "1 Foo 2024 00:00 +0000",
                                  "1 Jan 2024 25:00:00 +0000", "1 Jan 2024 10:00:00 +00", "1 Jan 2024 1:2:3:4 +0000",
                                  "1 Jan 2024 00:00:00 +0000 " + "x" * 300])
def test_parse_date_rejects(text):
    assert load()(text) is None
