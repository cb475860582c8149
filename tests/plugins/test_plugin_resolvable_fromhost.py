"""plugins/resolvable_fromhost.py against a real DNS server (dnsmasq) with MX, A and AAAA data."""

import pytest
from dnsserver import dns_server

from qpsmtpd_stdio import dns
from qpsmtpd_stdio.testing import Harness

RECORDS = [
    "mx-host=mx.test,mail.mx.test,10", "host-record=mail.mx.test,192.0.2.25",
    "mx-host=backup.test,ghost.backup.test,5", "mx-host=backup.test,mail.mx.test,20",
    "host-record=aonly.test,192.0.2.26",
    "host-record=v6only.test,2001:db8::26",
    "mx-host=nullmx.test,.,0",
    'txt-record=nothing-here.test,"just text"',
    "mx-host=badmx.test,ghost.badmx.test,10",
    "mx-host=loopmx.test,lo.loopmx.test,10", "host-record=lo.loopmx.test,127.0.0.1",
    "mx-host=sfmx.test,host.servfail.test,10",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from dns_server(tmp_path_factory, RECORDS)


@pytest.fixture
def smtp(server, tmp_path):
    h = Harness(tmp_path, plugins=["relay", "resolvable_fromhost", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    h.config("dns_servers", server.servers_line)
    h.config("dns_timeout", "0.3")
    return h


def mail(h, sender, **kw):
    r = h.run("EHLO client.example", f"MAIL FROM:<{sender}>", "QUIT", **kw)
    return r, r.replies[2]


@pytest.mark.parametrize("sender, logged", [
    ("a@mx.test", "pass, mx.test has MX at mail.mx.test"),
    ("a@backup.test", "pass, backup.test has MX at mail.mx.test"),   # the first MX host has no address
    ("a@aonly.test", "pass, aonly.test has an address"),
    ("a@v6only.test", "pass, v6only.test has an address"),
    ("", None), ("a@[192.0.2.1]", None),
])
def test_resolvable_senders_accepted(smtp, sender, logged):
    r, reply = mail(smtp, sender)
    assert reply.code == 250
    if logged:
        assert logged in r.log_text
    else:
        assert dns.NOTE not in r.connection.notes  # nothing to look up


@pytest.mark.parametrize("sender, why", [
    ("a@nothing.test", "nothing.test does not exist"),
    ("a@nothing-here.test", "nothing-here.test has no MX and no usable address"),
    ("a@badmx.test", "no MX host of badmx.test has a usable address"),
    ("a@loopmx.test", "no MX host of loopmx.test has a usable address"),   # 127.0.0.1 does not count
])
def test_unresolvable_sender_refused_temporarily_by_default(smtp, sender, why):
    r, reply = mail(smtp, sender)
    domain = sender.split("@")[1]
    assert (reply.code, reply.text) == (450, f"4.1.8 Sender domain {domain} cannot receive mail ({why})")


def test_reject_type_perm(smtp):
    smtp.plugins = ["relay", "resolvable_fromhost reject_type perm", "rcpt_ok"]
    _, reply = mail(smtp, "a@nothing.test")
    assert reply.code == 550 and reply.text.startswith("5.1.8 ")


def test_null_mx_refused(smtp):
    _, reply = mail(smtp, "a@nullmx.test")
    assert (reply.code, reply.text) == (550, "5.7.27 Sender address has null MX")


@pytest.mark.parametrize("sender", ["a@servfail.test", "a@x.dead.test", "a@sfmx.test"])
def test_dns_failure_is_4xx_never_5xx(smtp, sender):
    smtp.plugins = ["relay", "resolvable_fromhost reject_type perm", "rcpt_ok"]
    _, reply = mail(smtp, sender)
    assert reply.code == 450 and reply.text.startswith("4.4.3 Temporary failure looking up ")


def test_reject_0_and_exemptions(smtp):
    assert mail(smtp, "a@nothing.test", relay_client=True)[1].code == 250
    smtp.plugins = ["relay", "resolvable_fromhost reject 0", "rcpt_ok"]
    r, reply = mail(smtp, "a@nothing.test")
    assert reply.code == 250 and "fail, tolerated: nothing.test does not exist" in r.log_text


def test_invalid_networks_config(smtp):
    smtp.config("invalid_resolvable_fromhost", "192.0.2.0/24")
    assert mail(smtp, "a@aonly.test")[1].code == 450
    smtp.config("invalid_resolvable_fromhost", "198.51.100.0/24")
    assert mail(smtp, "a@loopmx.test")[1].code == 250  # the file replaces the default list
