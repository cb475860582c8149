"""Numbers from outside are ASCII digits or nothing: `²`, `٣` and friends never crash a session or pass as numbers."""

from __future__ import annotations

import pytest

from conftest import dialogue


@pytest.mark.parametrize("size", ["\u00b2", "\u0663", "\u2460", "-1", "+5", "1_0", "9" * 30])
def test_size_parameter(smtp, size):
    smtp.plugins("rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(dialogue("EHLO x", f"MAIL FROM:<a@example.org> SIZE={size}", "MAIL FROM:<a@example.org> SIZE=10",
                          "QUIT"))
    r.assert_wellformed()
    assert r.codes == [220, 250, 501, 250, 221], r.stdout
    assert "Traceback" not in r.log and "internal error" not in r.log


@pytest.mark.parametrize("size", ["\u00b2", "\u0663"])
def test_bdat_size(smtp, size):
    smtp.plugins("rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(dialogue("EHLO x", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", f"BDAT {size} LAST",
                          "QUIT"))
    assert r.codes == [220, 250, 250, 250, 501, 221], r.stdout


def test_xclient_port(smtp):
    smtp.write("xclient_clients", "192.0.2.10")
    r = smtp.run(dialogue("EHLO x", "XCLIENT ADDR=192.0.2.99 PORT=\u0663", "QUIT"))
    assert r.codes == [220, 250, 501, 221], r.stdout


def test_date_header_with_odd_digits_is_only_a_bad_date(smtp):
    smtp.plugins("headers reject 0", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    body = "From: a@example.org\r\nDate: Mon, \u00b2 Jan 2024 10:00:00 +0000\r\nSubject: s\r\n\r\nhi"
    r = smtp.run(dialogue("EHLO x", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", "DATA", "QUIT",
                          body=body))
    assert r.codes == [220, 250, 250, 250, 354, 250, 221], r.stdout
    assert "FATAL PLUGIN ERROR" not in r.log


def test_config_numbers(smtp):
    smtp.plugins("rcpt_ok", f"queue/maildir {smtp.maildir}")
    smtp.write("databytes", "\u0663")   # would have been read as 3
    smtp.write("loglevel", "\u00b2")
    r = smtp.run(dialogue("EHLO x", "MAIL FROM:<a@example.org> SIZE=1000", "QUIT"))
    assert r.codes == [220, 250, 250, 221], r.stdout
    assert "SIZE 52428800" in r.stdout.decode()  # the default, not 3
