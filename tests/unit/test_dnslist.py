"""qpsmtpd_stdio/dnslist.py: what a DNS list's answer means, and its config line."""

import pytest

from qpsmtpd_stdio.dnslist import DNSList


@pytest.mark.parametrize("line, answer, listed", [
    ("bl.test", "127.0.0.2", True),
    ("bl.test", "127.255.255.254", False),   # Spamhaus: "query refused", not a listing
    ("bl.test", "192.0.2.1", False),          # a wildcard or hijacked answer
    ("bl.test=127.0.0.4-7,127.0.0.10", "127.0.0.5", True),
    ("bl.test=127.0.0.4-7,127.0.0.10", "127.0.0.10", True),
    ("bl.test=127.0.0.4-7,127.0.0.10", "127.0.0.2", False),
])
def test_dns_list_answers(line, answer, listed):
    assert DNSList(line).listed_by(answer) is listed


def test_dns_list_line_forms():
    colon = DNSList("bl.test:Listed, see http://bl.test/?ip=%IP%")
    space = DNSList("bl.test=127.0.0.2 Listed at %ZONE%")
    assert (colon.zone, colon.message) == ("bl.test", "Listed, see http://bl.test/?ip=%IP%")
    assert (space.zone, space.codes, space.message) == ("bl.test", ["127.0.0.2"], "Listed at %ZONE%")
