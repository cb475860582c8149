"""plugins/fcrdns.py against a real DNS server (dnsmasq) with PTR, A and AAAA data."""

import pytest
from dnsserver import dns_server

from qpsmtpd_stdio import dns
from qpsmtpd_stdio.testing import Harness

BODY = "From: a@example.org\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nSubject: hi\n\nHello."
RECORDS = [
    "host-record=good.example.test,192.0.2.20,2001:db8::20",       # PTR and A/AAAA that agree
    "ptr-record=21.2.0.192.in-addr.arpa,liar.example.test",           # PTR to a name that points elsewhere
    "host-record=liar.example.test,192.0.2.99",
    "ptr-record=22.2.0.192.in-addr.arpa,ghost.example.test",          # PTR to a name that does not exist
    "ptr-record=23.2.0.192.in-addr.arpa,x.servfail.test",             # PTR to a name whose lookup fails
    "ptr-record=24.2.0.192.in-addr.arpa,liar.example.test",           # two PTRs: one wrong, one right
    "ptr-record=24.2.0.192.in-addr.arpa,multi.example.test",
    "address=/multi.example.test/192.0.2.24",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from dns_server(tmp_path_factory, RECORDS)


@pytest.fixture
def smtp(server, tmp_path):
    h = Harness(tmp_path, plugins=["relay", "fcrdns", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    h.config("dns_servers", server.servers_line)
    h.config("dns_timeout", "0.3")
    return h


def send(h, ip, **kw):
    return h.run("EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                 body=BODY, remote_ip=ip, **kw)


@pytest.mark.parametrize("ip, result, host", [
    ("192.0.2.20", "pass", "good.example.test"),
    ("2001:db8::20", "pass", "good.example.test"),
    ("192.0.2.24", "pass", "multi.example.test"),
    ("192.0.2.21", "fail", None),
    ("192.0.2.22", "fail", None),
    ("192.0.2.25", "permerror", None),     # no PTR at all
    ("192.0.2.23", "temperror", None),
])
def test_results(smtp, ip, result, host):
    r = send(smtp, ip)
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]  # reject 0 (the default) only records
    assert r.connection.notes["fcrdns"] == result
    assert r.connection.notes.get("fcrdns_host") == host
    header = r.queued[0].header.get("Authentication-Results")
    value = f'"{ip}"' if ":" in ip else ip
    assert header == f"mx.example.test; iprev={result}" + (f" ({host})" if host else "") + f" policy.iprev={value}"


def test_verified_name_goes_into_received(smtp):
    r = send(smtp, "192.0.2.20")
    assert r.connection.remote_host == "good.example.test"
    assert "(good.example.test [192.0.2.20])" in r.queued[0].header.get("Received")


def test_tcpserver_name_is_kept(smtp):
    r = send(smtp, "192.0.2.20", env={"TCPREMOTEHOST": "given.example"})
    assert r.connection.remote_host == "given.example" and r.connection.notes["fcrdns"] == "pass"


def test_reject_1_refuses_rcpt_unless_pass(smtp):
    smtp.plugins = ["relay", "fcrdns reject 1", "rcpt_ok"]
    assert send(smtp, "192.0.2.20").codes[3] == 250
    r = smtp.run("EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>",
                 "RCPT TO:<postmaster@example.test>", "QUIT", remote_ip="192.0.2.21")
    assert r.codes == [220, 250, 250, 450, 250, 221]
    assert r.replies[3].text == "4.7.25 Your address 192.0.2.21 has no reverse DNS that points back to it"
    smtp.plugins = ["relay", "fcrdns reject 1 reject_type perm", "rcpt_ok"]
    assert send(smtp, "192.0.2.25").codes[3] == 550
    assert send(smtp, "192.0.2.23").codes[3] == 450  # temperror: never 5xx


def test_relay_client_not_checked(smtp):
    r = send(smtp, "192.0.2.21", relay_client=True)
    assert "fcrdns" not in r.connection.notes and dns.NOTE not in r.connection.notes


def test_nothing_waits_before_rcpt(smtp):
    """The PTR query goes out at connect, but a session that never gets to RCPT never waits for it."""
    r = smtp.run("EHLO c.example", "MAIL FROM:<a@example.org>", "QUIT", remote_ip="192.0.2.20")
    resolver = r.connection.notes[dns.NOTE]
    assert resolver.sent >= 1 and resolver.waited == 0 and "fcrdns" not in r.connection.notes
