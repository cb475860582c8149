"""plugins/helo.py with `dns 1`: qpsmtpd's DNS checks of the HELO name, against a real DNS server (dnsmasq)."""

import pytest
from dnsserver import dns_server, free_port

from qpsmtpd_stdio import dns
from qpsmtpd_stdio.testing import Harness

RECORDS = [
    "host-record=good.example.test,192.0.2.20",          # A and PTR that agree
    "host-record=pool.example.test,192.0.2.99",          # an address in the client's /24
    'txt-record=nodata.example.test,"no address here"',
    "host-record=other.example.org.test,198.51.100.1",
    "ptr-record=21.2.0.192.in-addr.arpa,mx1.example.org.test",  # a sibling of other.example.org.test
    "ptr-record=22.2.0.192.in-addr.arpa,unrelated.test",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from dns_server(tmp_path_factory, RECORDS)


@pytest.fixture
def smtp(server, tmp_path):
    h = Harness(tmp_path, plugins=["helo policy rfc dns 1", "relay", "rcpt_ok"])
    h.config("dns_servers", server.servers_line)
    h.config("dns_timeout", "0.3")
    return h


def hello(h, name, ip):
    return h.run(f"EHLO {name}", "QUIT", remote_ip=ip)


def test_matching_name_and_address_pass(smtp):
    r = hello(smtp, "good.example.test", "192.0.2.20")
    assert r.codes == [220, 250, 221]
    assert r.connection.notes["helo_forward_match"] == r.connection.notes["helo_reverse_match"] == 1


@pytest.mark.parametrize("name, ip, text", [
    ("nx.example.test", "192.0.2.20", "HELO hostname does not exist"),
    ("nodata.example.test", "192.0.2.20", "HELO hostname did not resolve"),
    ("good.example.test", "192.0.2.30", "no reverse DNS for 192.0.2.30"),
])
def test_rfc_refusals(smtp, name, ip, text):
    r = hello(smtp, name, ip)
    assert r.codes == [220, 550] and r.replies[1].text == f"5.7.1 {text}"


def test_strict_wants_forward_or_reverse_match(smtp):
    smtp.plugins = ["helo policy strict dns 1", "relay", "rcpt_ok"]
    r = hello(smtp, "other.example.org.test", "192.0.2.22")
    assert r.codes == [220, 550] and r.replies[1].text == "5.7.1 That HELO hostname fails FCrDNS"
    r = hello(smtp, "other.example.org.test", "192.0.2.21")   # PTR shares the last two labels
    assert r.codes == [220, 250, 221] and "helo_forward_match" not in r.connection.notes
    r = hello(smtp, "pool.example.test", "192.0.2.22")        # the name's address is in the client's /24
    assert r.codes == [220, 250, 221] and r.connection.notes["helo_forward_match"] == 1
    smtp.plugins = ["helo policy rfc dns 1", "relay", "rcpt_ok"]
    assert hello(smtp, "other.example.org.test", "192.0.2.22").codes == [220, 250, 221]


def test_dns_failure_never_refuses(smtp):
    smtp.config("dns_servers", f"127.0.0.1 {free_port()}")  # nobody listens
    smtp.plugins = ["helo policy strict dns 1", "relay", "rcpt_ok"]
    r = hello(smtp, "good.example.test", "192.0.2.20")
    assert r.codes == [220, 250, 221] and "skip no_forward_dns: UNREACHABLE/UNREACHABLE" in r.log_text
    assert "skip no_reverse_dns: UNREACHABLE" in r.log_text


def test_without_dns_1_no_query(smtp):
    smtp.plugins = ["helo policy strict", "relay", "rcpt_ok"]
    r = hello(smtp, "nx.example.test", "192.0.2.30")
    assert r.codes == [220, 250, 221] and dns.NOTE not in r.connection.notes
