"""hosts_allow: the `hosts_allow` file (first match decides, qpsmtpd's codes) and the per-address limit the
forkserver and prefork hand over, adjusted by karma."""

from __future__ import annotations

import pytest

from conftest import dialogue

KARMA = """from qpsmtpd_stdio import DECLINED
import os
def hook_connect(plugin, txn):
    plugin.connection.notes["karma_history"] = int(os.environ["TEST_KARMA"])
    return DECLINED
"""


def session(smtp, ip="192.0.2.10", **env):
    smtp.plugins("hosts_allow", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(dialogue("EHLO c.example", "QUIT"), TCPREMOTEIP=ip, **env)
    r.assert_wellformed()
    return r


def test_first_matching_line_decides(smtp):
    smtp.write("hosts_allow", "192.0.2.4 DECLINED\n192.0.2.0/24 DENY Sorry, known spam only source\n")
    r = session(smtp, "192.0.2.10")
    assert r.codes[0] == 554 and b"Sorry, known spam only source" in r.lines[0]
    assert session(smtp, "192.0.2.4").codes == [220, 250, 221]  # excluded from the network's DENY
    assert session(smtp, "198.51.100.1").codes == [220, 250, 221]  # no line: DECLINED


def test_ipv6_mapped_and_soft_refusals(smtp):
    smtp.write("hosts_allow", "2001:db8::/32 DENYSOFT_DISCONNECT try later\n10.0.0.0/8 DENYSOFT busy here\n")
    r = session(smtp, "2001:db8::5")
    assert r.codes == [421] and b"try later" in r.lines[0]
    r = session(smtp, "::ffff:10.1.2.3")  # canonical: 10.1.2.3, in 10.0.0.0/8
    assert r.codes[0] == 421 and b"busy here" in r.lines[0]


def test_unknown_code_is_declined_and_logged(smtp):
    smtp.write("hosts_allow", "192.0.2.0/24 MAYBE whatever\n")
    r = session(smtp)
    assert r.codes == [220, 250, 221]
    assert "unknown return code 'MAYBE'" in r.log


@pytest.mark.parametrize("count, limit, karma, code", [
    ("2", "2", None, 220),   # at the limit
    ("3", "2", None, 421),   # over it
    ("2", "5", "0", 421),    # karma 0 or less: one session only
    ("1", "5", "-3", 220),
    ("5", "2", "6", 220),    # karma above 5: three more
    ("6", "2", "6", 421),
])
def test_sessions_per_address_from_the_daemon(smtp, count, limit, karma, code):
    env = {"QPSMTPD_CONNECTIONS_FROM_IP": count, "QPSMTPD_MAX_FROM_IP": limit}
    if karma is None:
        smtp.plugins("hosts_allow", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    else:
        smtp.plugin("setkarma", KARMA)
        smtp.plugins("setkarma", "hosts_allow", "rcpt_ok", f"queue/maildir {smtp.maildir}")
        env["TEST_KARMA"] = karma
    r = smtp.run(dialogue("EHLO c.example", "QUIT"), **env)
    r.assert_wellformed()
    assert r.codes[0] == code
    if code == 421:
        assert r.lines[0].startswith(b"421 4.7.0 too many connections from 192.0.2.10, try again later")


def test_no_count_under_a_superserver(smtp):
    assert session(smtp, QPSMTPD_CONNECTIONS_FROM_IP=None, QPSMTPD_MAX_FROM_IP=None).codes == [220, 250, 221]
