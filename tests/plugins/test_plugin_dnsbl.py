"""plugins/dnsbl.py against a real DNS server (dnsmasq) serving blocklist zones."""

import pytest
from conftest import SMTPConfig, dialogue
from dnsserver import dns_server

from qpsmtpd_stdio import dns
from qpsmtpd_stdio.testing import Harness

BODY = "From: a@example.org\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nSubject: hi\n\nHello."
V6 = "2001:db8::66"
RECORDS = [
    "address=/66.2.0.192.bl.test/127.0.0.2",
    'txt-record=66.2.0.192.bl.test,"Listed: see http://bl.test/?192.0.2.66"',
    f"address=/{dns.reverse_ip(V6)}.bl.test/127.0.0.2",
    f'txt-record={dns.reverse_ip(V6)}.bl.test,"IPv6 listed"',
    "address=/67.2.0.192.codes.test/127.0.0.3",
    "address=/68.2.0.192.msg.test/127.0.0.2",
    "address=/69.2.0.192.bl.test/127.255.255.254",
    'txt-record=69.2.0.192.bl.test,"Error: open resolver"',
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from dns_server(tmp_path_factory, RECORDS)


@pytest.fixture
def smtp(server, tmp_path):
    h = Harness(tmp_path, plugins=["relay", "dnsbl", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    h.config("dns_servers", server.servers_line)
    h.config("dns_timeout", "0.3")
    h.config("dnsbl_zones", "bl.test", "codes.test=127.0.0.2", "msg.test:Blocked at %ZONE% for %IP%")
    return h


def send(h, rcpt="bob@example.test", **kw):
    return h.run("EHLO client.example", "MAIL FROM:<a@example.org>", f"RCPT TO:<{rcpt}>", "DATA", "QUIT",
                 body=BODY, **kw)


def test_listed_ip_refused_at_rcpt_with_the_lists_text(smtp):
    r = send(smtp, remote_ip="192.0.2.66")
    assert r.codes[:4] == [220, 250, 250, 550]
    assert r.replies[3].text == "5.7.1 Listed: see http://bl.test/?192.0.2.66"
    assert not r.queued


def test_unlisted_ip_accepted(smtp):
    r = send(smtp, remote_ip="192.0.2.1")
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    assert len(r.queued) == 1


@pytest.mark.parametrize("zone", ["dead.test", "servfail.test"])
def test_list_that_does_not_answer_lets_mail_through(smtp, zone):
    smtp.config("dnsbl_zones", zone)
    r = send(smtp, remote_ip="192.0.2.66")
    assert r.codes[3] == 250 and len(r.queued) == 1
    assert f"{zone} did not answer" in r.log_text


@pytest.mark.parametrize("rcpt", ["postmaster@example.test", "Abuse@example.test"])
def test_postmaster_and_abuse_always_reachable(smtp, rcpt):
    r = send(smtp, rcpt=rcpt, remote_ip="192.0.2.66")
    assert r.codes[3] == 250 and len(r.queued) == 1


def test_ipv6_client_looked_up_in_nibble_form(smtp):
    r = send(smtp, remote_ip=V6)
    assert r.codes[3] == 550 and r.replies[3].text == "5.7.1 IPv6 listed"


def test_custom_message_and_return_codes(smtp):
    assert send(smtp, remote_ip="192.0.2.67").codes[3] == 250   # 127.0.0.3 is not a code we asked for
    r = send(smtp, remote_ip="192.0.2.68")
    assert r.codes[3] == 550 and r.replies[3].text == "5.7.1 Blocked at msg.test for 192.0.2.68"


def test_list_error_code_is_not_a_listing(smtp):
    assert send(smtp, remote_ip="192.0.2.69").codes[3] == 250


def test_relay_clients_and_dnsbl_allow_exempt(smtp):
    assert send(smtp, remote_ip="192.0.2.66", relay_client=True).codes[3] == 250
    smtp.config("dnsbl_allow", "192.0.2.")
    assert send(smtp, remote_ip="192.0.2.66").codes[3] == 250


def test_reject_type_disconnect(smtp):
    smtp.plugins = ["relay", "dnsbl reject_type disconnect", "rcpt_ok"]
    r = smtp.run("EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "NOOP",
                 remote_ip="192.0.2.66")
    assert r.codes == [220, 250, 250, 550]


def test_legacy_single_argument_is_reject_type(smtp):
    smtp.plugins = ["relay", "dnsbl temp", "rcpt_ok"]
    assert send(smtp, remote_ip="192.0.2.66").codes[3] == 450


def test_reject_0_and_naughty_only_record(smtp):
    smtp.plugins = ["relay", "dnsbl reject 0", "rcpt_ok"]
    assert send(smtp, remote_ip="192.0.2.66").codes[3] == 250
    smtp.plugins = ["relay", "dnsbl reject naughty", "rcpt_ok"]
    r = smtp.run("EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", "RCPT TO:<c@example.test>",
                 "QUIT", remote_ip="192.0.2.66")
    assert r.codes == [220, 250, 250, 250, 250, 221]
    assert r.connection.notes["naughty"] == "Listed: see http://bl.test/?192.0.2.66"  # stored once


def test_rejectmsg_lines_come_first(smtp):
    smtp.config("dnsbl_rejectmsg", "If you think this is wrong, write to postmaster.")
    r = send(smtp, remote_ip="192.0.2.66")
    assert r.replies[3].lines == ["5.7.1 If you think this is wrong, write to postmaster.",
                                  "5.7.1 Listed: see http://bl.test/?192.0.2.66"]


def test_no_zones_no_dns(smtp):
    smtp.config("dnsbl_zones")
    r = send(smtp, remote_ip="192.0.2.66")
    assert r.codes[3] == 250 and "dns.resolver" not in r.connection.notes


def test_rblsmtpd(smtp, monkeypatch):
    """RBLSMTPD as rblsmtpd sets it: a text refuses (a leading `-`: permanently), empty skips the lists."""
    monkeypatch.setenv("RBLSMTPD", "")
    assert send(smtp, remote_ip="192.0.2.66").codes[3] == 250
    monkeypatch.setenv("RBLSMTPD", "-Go away, %IP%")
    r = send(smtp, remote_ip="192.0.2.1")
    assert r.codes[3] == 550 and r.replies[3].text == "5.7.1 Go away, 192.0.2.1"
    monkeypatch.setenv("RBLSMTPD", "Later")
    assert send(smtp, remote_ip="192.0.2.1").codes[3] == 450


def test_listed_ip_refused_by_the_real_binary(smtp):
    (smtp.dir.parent / "binary").mkdir()
    cfg = SMTPConfig(smtp.dir.parent / "binary")
    for name in ("rcpthosts", "dns_servers", "dns_timeout", "dnsbl_zones"):
        cfg.write(name, (smtp.dir / name).read_text())
    cfg.plugins("relay", "dnsbl", "rcpt_ok", f"queue/maildir {cfg.maildir}")
    r = cfg.run(dialogue("EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>",
                         "RCPT TO:<postmaster@example.test>", "QUIT"), TCPREMOTEIP="192.0.2.66")
    assert r.codes == [220, 250, 250, 550, 250, 221]
    assert b"550 5.7.1 Listed: see http://bl.test/?192.0.2.66\r\n" in r.stdout
