"""NUL in a message is refused (554 5.6.0) before any queue sees it: in a header, in the body, over DATA or BDAT.

A downstream that drops NULs would read `\\r\\n\\x00.\\r\\n` as the end of the data: the outbound form of
SMTP smuggling. So no NUL is ever stored or relayed.
"""

from __future__ import annotations

import pytest

from conftest import dialogue


@pytest.mark.parametrize("body", [
    b"Subject: a\x00b\r\n\r\nhello\r\n",
    b"Subject: s\r\n\r\nline\r\n\x00.\r\nMAIL FROM:<evil@example.org>\r\n",
    b"Subject: s\r\n\r\n" + b"x\r\n" * 100000 + b"\x00\r\n",   # past the spool's memory threshold
], ids=["header", "smuggling", "spooled"])
def test_nul_in_data_is_refused_and_nothing_stored(smtp, body):
    smtp.plugins("rcpt_ok", f"queue/maildir {smtp.maildir}")
    wire = dialogue("EHLO x", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", "DATA") + body + b".\r\nQUIT\r\n"
    r = smtp.run(wire)
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 250, 354, 554, 221], r.stdout
    assert b"554 5.6.0 Message contains a NUL character" in r.stdout
    assert smtp.messages() == []


def test_nul_in_a_bdat_chunk_is_refused(smtp):
    smtp.plugins("rcpt_ok", f"queue/maildir {smtp.maildir}")
    chunk = b"Subject: s\r\n\r\nhi\x00\r\n"
    wire = dialogue("EHLO x", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>") + \
        f"BDAT {len(chunk)} LAST\r\n".encode() + chunk + b"QUIT\r\n"
    r = smtp.run(wire)
    assert r.codes == [220, 250, 250, 250, 554, 221], r.stdout
    assert smtp.messages() == []


def test_other_controls_pass(smtp):
    # ISO-2022-JP needs ESC; form feeds appear in real mail. Only NUL is refused.
    smtp.plugins("rcpt_ok", f"queue/maildir {smtp.maildir}")
    body = b"Subject: s\r\n\r\n\x1b$B$3$s\x1b(B\x0c\r\n"
    wire = dialogue("EHLO x", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", "DATA") + body + b".\r\nQUIT\r\n"
    r = smtp.run(wire)
    assert r.codes == [220, 250, 250, 250, 354, 250, 221], r.stdout
    [msg] = smtp.messages()
    assert b"\x1b$B$3$s\x1b(B\x0c" in msg
