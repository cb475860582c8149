"""plugins/rhsbl.py against a real DNS server (dnsmasq) serving a right-hand-side blocklist."""

import pytest
from dnsserver import dns_server

from qpsmtpd_stdio.testing import Harness

RECORDS = [
    "address=/spammer.test.rhs.test/127.0.0.2",
    'txt-record=spammer.test.rhs.test,"is a known spammer domain"',
    "address=/quiet.test.rhs.test/127.0.0.2",
    "address=/spammer.test.msg.test/127.0.0.2",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from dns_server(tmp_path_factory, RECORDS)


@pytest.fixture
def smtp(server, tmp_path):
    h = Harness(tmp_path, plugins=["relay", "rhsbl", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    h.config("dns_servers", server.servers_line)
    h.config("dns_timeout", "0.3")
    h.config("rhsbl_zones", "rhs.test")
    return h


def session(h, sender, *rcpts, **kw):
    return h.run("EHLO client.example", f"MAIL FROM:<{sender}>", *[f"RCPT TO:<{r}>" for r in rcpts], "QUIT", **kw)


def test_listed_sender_domain_refused_at_rcpt(smtp):
    r = session(smtp, "joe@Spammer.test", "bob@example.test", "postmaster@example.test")
    assert r.codes == [220, 250, 250, 550, 250, 221]  # MAIL accepted; postmaster still reachable
    assert r.replies[3].text == "5.7.1 Mail from spammer.test rejected because it is a known spammer domain"


def test_unlisted_and_null_senders_accepted(smtp):
    assert session(smtp, "joe@example.org", "bob@example.test").codes == [220, 250, 250, 250, 221]
    r = session(smtp, "", "bob@example.test")
    assert r.codes == [220, 250, 250, 250, 221] and "dns.resolver" not in r.connection.notes


def test_list_without_txt_and_custom_message(smtp):
    r = session(smtp, "joe@quiet.test", "bob@example.test")
    assert r.replies[3].text == "5.7.1 Mail from quiet.test rejected because it is listed by rhs.test"
    smtp.config("rhsbl_zones", "msg.test See http://msg.test/ (client %IP%)")
    r = session(smtp, "joe@spammer.test", "bob@example.test")
    assert r.replies[3].text == "5.7.1 See http://msg.test/ (client 192.0.2.10)"


def test_relay_client_exempt_and_reject_0(smtp):
    assert session(smtp, "joe@spammer.test", "bob@example.test", relay_client=True).codes[3] == 250
    smtp.plugins = ["relay", "rhsbl reject 0", "rcpt_ok"]
    r = session(smtp, "joe@spammer.test", "bob@example.test")
    assert r.codes[3] == 250 and "fail, tolerated" in r.log_text


def test_each_transaction_is_checked_afresh(smtp):
    r = smtp.run("EHLO c.example", "MAIL FROM:<joe@spammer.test>", "RCPT TO:<bob@example.test>", "RSET",
                 "MAIL FROM:<joe@example.org>", "RCPT TO:<bob@example.test>", "QUIT")
    assert r.codes == [220, 250, 250, 550, 250, 250, 250, 221]


def test_dead_list_lets_mail_through(smtp):
    smtp.config("rhsbl_zones", "dead.test")
    r = session(smtp, "joe@spammer.test", "bob@example.test")
    assert r.codes[3] == 250 and "dead.test did not answer" in r.log_text


def test_legacy_disconnect_argument(smtp):
    smtp.plugins = ["relay", "rhsbl disconnect", "rcpt_ok"]
    r = smtp.run("EHLO c.example", "MAIL FROM:<joe@spammer.test>", "RCPT TO:<bob@example.test>", "NOOP")
    assert r.codes == [220, 250, 250, 550]
