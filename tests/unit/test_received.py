"""received.py: the Received: field, whatever the client called itself."""

from __future__ import annotations

import re

from qpsmtpd_stdio.address import parse_path
from qpsmtpd_stdio.connection import Connection
from qpsmtpd_stdio.received import protocol_name, received_lines, rfc5322_date, safe
from qpsmtpd_stdio.tls import TLSInfo
from qpsmtpd_stdio.transaction import Transaction


def session(esmtp=True, tls=None, user=None, utf8=False, rcpts=("b@example.test",)):
    conn = Connection()
    conn.set_client("::ffff:192.0.2.7", 4000, host="client.example")
    conn.hello_host, conn.esmtp, conn.tls, conn.auth_user = "helo.example", esmtp, tls, user
    txn = Transaction()
    txn.smtputf8 = utf8
    txn.recipients = [parse_path(f"<{r}>") for r in rcpts]
    return conn, txn


def test_protocol_names():
    tls = TLSInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256)
    assert protocol_name(*session(esmtp=False)) == "SMTP"
    assert protocol_name(*session()) == "ESMTP"
    assert protocol_name(*session(tls=tls, user="u")) == "ESMTPSA"
    assert protocol_name(*session(utf8=True, user="u")) == "UTF8SMTPA"


def test_one_recipient_and_tls():
    conn, txn = session(tls=TLSInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256))
    lines = received_lines("mx.example.test", conn, txn)
    assert lines[0] == "from helo.example (client.example [192.0.2.7])"
    assert lines[1] == "by mx.example.test (qpsmtpd-stdio/0.1.0) with ESMTPS"
    assert lines[2] == f"(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256 bits)) id {txn.id}"
    assert re.fullmatch(r"for <b@example\.test>; \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", lines[3])


def test_hostile_names_are_made_safe():
    conn, txn = session(rcpts=("a@example.test", "b@example.test"))
    conn.hello_host = "evil\r\nBcc: x@example.org (comment) ;"
    lines = received_lines("mx.example.test", conn, txn)
    # Parentheses, quotes, backslashes and `;` would open a comment or a string, or end the tokens early.
    assert lines[0].startswith("from evil??Bcc:?x@example.org??comment??? (client.example")
    assert lines[-2].endswith(";") and not lines[-1].startswith("for")  # two recipients: no `for`
    assert all(line.isprintable() for line in lines)


def test_safe_and_date():
    assert safe("") == "unknown" and safe("a b\x00") == "a?b?" and len(safe("x" * 999)) == 255
    assert rfc5322_date(0).endswith("1970 00:00:00 +0000") or "1970" in rfc5322_date(0)
