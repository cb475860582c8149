"""plugins/relay.py: relayclients/morerelayclients/norelayclients (IP, prefix, CIDR, IPv6) and RELAYCLIENT."""

import pytest
from conftest import dialogue


def rcpt_elsewhere(smtp, **env):
    """The reply code to a RCPT for a domain that is not ours."""
    r = smtp.run(dialogue("EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<x@elsewhere.example>", "QUIT"),
                 **env)
    r.assert_wellformed()
    return r.codes[3]


def test_stranger_may_not_relay(smtp):
    assert rcpt_elsewhere(smtp) == 550


@pytest.mark.parametrize("entry, ip", [
    ("192.0.2.10", "192.0.2.10"),
    ("192.0.2.", "192.0.2.10"),
    ("192.", "192.0.2.10"),
    ("192.0.2.0/24", "192.0.2.10"),
    ("10.0.0.0/8  # the office", "10.1.2.3"),
    ("2001:db8::10", "2001:db8::10"),
    ("2001:DB8:0:0::10", "2001:db8::10"),
    ("2001:db8:", "2001:db8::10"),
    ("2001:0db8:0000:", "2001:db8::10"),
    ("2001:db8::/32", "2001:db8::10"),
    ("192.0.2.10", "::ffff:192.0.2.10"),
])
def test_relayclients_entries(smtp, entry, ip):
    smtp.write("relayclients", entry)
    assert rcpt_elsewhere(smtp, TCPREMOTEIP=ip) == 250


@pytest.mark.parametrize("entry, ip", [
    ("192.0.2.1", "192.0.2.10"),       # an exact entry is not a prefix
    ("192.0.2", "192.0.2.10"),         # a prefix must end in a dot
    ("19.", "192.0.2.10"),
    ("192.0.3.0/24", "192.0.2.10"),
    ("2001:db8::/32", "2001:db9::1"),
    ("192.0.2.0/24", "2001:db8::10"),
    ("not-an-ip/99", "192.0.2.10"),
])
def test_relayclients_non_matches(smtp, entry, ip):
    smtp.write("relayclients", entry)
    assert rcpt_elsewhere(smtp, TCPREMOTEIP=ip) == 550


def test_morerelayclients(smtp):
    smtp.write("morerelayclients", "192.0.2.")
    assert rcpt_elsewhere(smtp) == 250


def test_relayclient_env_even_empty(smtp):
    assert rcpt_elsewhere(smtp, RELAYCLIENT="") == 250


def test_norelayclients_wins_over_relayclients_and_env(smtp):
    smtp.write("relayclients", "192.0.2.0/24")
    smtp.write("norelayclients", "192.0.2.10")
    assert rcpt_elsewhere(smtp) == 550
    assert rcpt_elsewhere(smtp, RELAYCLIENT="") == 550
    assert rcpt_elsewhere(smtp, TCPREMOTEIP="192.0.2.11") == 250


def test_relay_client_is_logged(smtp):
    smtp.write("relayclients", "192.0.2.10")
    r = smtp.run(dialogue("QUIT"))
    assert "192.0.2.10 is a relay client" in r.log
