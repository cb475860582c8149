"""dmarc: policies, DKIM keys and SPF records served by a real DNS server (dnsmasq); results from spf and dkim."""

import base64
import subprocess

import pytest
from conftest import SMTPConfig, dialogue
from dnsserver import dns_server

from qpsmtpd_stdio.testing import Harness

dkim = pytest.importorskip("dkim", reason="dkimpy not installed (pip install 'qpsmtpd-stdio[dkim]')")
pytest.importorskip("publicsuffixlist", reason="publicsuffixlist not installed (pip install 'qpsmtpd-stdio[dmarc]')")

POLICIES = {"reject.test": "p=reject", "quar.test": "p=quarantine", "none.test": "p=none", "sp.test": "p=none; sp=reject",
            "pct.test": "p=reject; pct=0", "strict.test": "p=reject; adkim=s; aspf=s", "spfok.test": "p=reject",
            "example.co.uk": "p=reject"}


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    private = tmp_path_factory.mktemp("key") / "key.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "1024"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return private.read_bytes(), base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory, key):
    lines = ["local=/uk/", 'txt-record=spfok.test,"v=spf1 ip4:192.0.2.10 -all"',
             'txt-record=_dmarc.multi.test,"v=DMARC1; p=reject"', 'txt-record=_dmarc.multi.test,"v=DMARC1; p=none"',
             'txt-record=_dmarc.bad.test,"v=DMARC1; p=bogus"']
    lines += [f'txt-record=_dmarc.{domain},"v=DMARC1; {policy}"' for domain, policy in POLICIES.items()]
    lines += [f'txt-record=sel._domainkey.{d},"v=DKIM1; k=rsa; p={key[1]}"'
              for d in ("reject.test", "mail.reject.test", "strict.test", "mail.strict.test", "other.test")]
    yield from dns_server(tmp_path_factory, lines)


@pytest.fixture
def smtp(server, tmp_path):
    h = Harness(tmp_path, plugins=["relay", "sender_permitted_from", "dkim", "dmarc", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    h.config("dns_servers", server.servers_line)
    h.config("dns_timeout", "0.3")
    return h


def message(author, key=None, d=None):
    text = (f"From: Someone <{author}>\r\nTo: bob@example.test\r\nSubject: hello\r\n"
            "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nHello.\r\n")
    if key is None:
        return text
    return dkim.sign(text.encode(), b"sel", d.encode(), key[0]).decode() + text


def send(h, body, sender="bounce@elsewhere.test", **kw):
    return h.run("EHLO client.example", f"MAIL FROM:<{sender}>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                 body=body, **kw)


def dmarc_entry(r):
    values = r.queued[0].header.get_all("Authentication-Results")
    return next(e.strip() for v in values for e in v.split(";") if e.strip().startswith("dmarc="))


def test_p_reject_without_aligned_authentication_is_refused(smtp):
    r = send(smtp, message("ceo@reject.test"))
    assert r.codes == [220, 250, 250, 250, 354, 554, 221]
    assert r.replies[5].text == "5.7.1 DMARC policy of reject.test refuses this message (not authenticated)"
    assert r.queued == []


@pytest.mark.parametrize("author, d", [("ceo@reject.test", "reject.test"), ("ceo@reject.test", "mail.reject.test"),
                                       ("ceo@strict.test", "strict.test")])
def test_aligned_dkim_passes(smtp, key, author, d):
    r = send(smtp, message(author, key, d))
    assert r.codes[5] == 250
    assert dmarc_entry(r).startswith("dmarc=pass (p=reject") and dmarc_entry(r).endswith(f"header.from={author[4:]}")


def test_unaligned_or_strictly_unaligned_dkim_fails(smtp, key):
    assert send(smtp, message("ceo@reject.test", key, "other.test")).codes[5] == 554
    assert send(smtp, message("ceo@strict.test", key, "mail.strict.test")).codes[5] == 554  # adkim=s


def test_aligned_spf_passes(smtp):
    r = send(smtp, message("ceo@spfok.test"), sender="bounces@spfok.test")
    assert r.codes[5] == 250
    assert dmarc_entry(r) == "dmarc=pass (p=reject pct=100 dis=none) header.from=spfok.test"
    smtp.plugins = ["relay", "dkim", "dmarc", "rcpt_ok"]  # no spf plugin: dmarc checks SPF itself
    assert send(smtp, message("ceo@spfok.test"), sender="bounces@spfok.test").codes[5] == 250
    assert send(smtp, message("ceo@spfok.test"), sender="bounces@spfok.test", remote_ip="192.0.2.66").codes[5] == 554


@pytest.mark.parametrize("author, code, entry", [
    ("a@quar.test", 250, "dmarc=fail (p=quarantine pct=100 dis=quarantine) header.from=quar.test"),
    ("a@none.test", 250, "dmarc=fail (p=none pct=100 dis=none) header.from=none.test"),
    ("a@sp.test", 250, "dmarc=fail (p=none sp=reject pct=100 dis=none) header.from=sp.test"),
    ("a@pct.test", 250, "dmarc=fail (p=reject pct=0 dis=quarantine) header.from=pct.test"),
    ("a@nothing.test", 250, "dmarc=none header.from=nothing.test"),
    ("a@multi.test", 250, "dmarc=none header.from=multi.test"),
    ("a@bad.test", 250, "dmarc=none header.from=bad.test"),
    ("a@x.dead.test", 250, "dmarc=temperror header.from=x.dead.test"),
])
def test_policies_and_lookups(smtp, author, code, entry):
    r = send(smtp, message(author))
    assert r.codes[5] == code
    assert dmarc_entry(r) == entry


@pytest.mark.parametrize("author", ["a@deep.sub.sp.test", "a@mail.example.co.uk"])
def test_subdomains_use_the_organizational_domain_policy(smtp, author):
    r = send(smtp, message(author))
    assert r.codes[5] == 554  # sp=reject at sp.test; p=reject at example.co.uk (co.uk is a public suffix)


def test_quarantine_option_and_reject_0(smtp):
    smtp.plugins = ["relay", "sender_permitted_from", "dkim", "dmarc quarantine reject", "rcpt_ok"]
    assert send(smtp, message("a@quar.test")).codes[5] == 554
    smtp.plugins = ["relay", "sender_permitted_from", "dkim", "dmarc reject 0", "rcpt_ok"]
    r = send(smtp, message("a@reject.test"))
    assert r.codes[5] == 250 and dmarc_entry(r).startswith("dmarc=fail (p=reject")
    assert r.connection.notes["karma"] == -3
    smtp.plugins = ["relay", "sender_permitted_from", "dkim", "dmarc reject_type temp", "rcpt_ok"]
    r = send(smtp, message("a@reject.test"))
    assert r.replies[5].code == 451 and r.replies[5].text.startswith("4.7.1 DMARC policy of reject.test")
    smtp.plugins = ["relay", "sender_permitted_from", "dkim", "dmarc reject naughty", "naughty reject data_post",
                    "rcpt_ok"]
    r = send(smtp, message("a@reject.test"))
    assert r.replies[5].code == 554 and r.replies[5].text.startswith("5.7.1 DMARC policy of reject.test")


def test_several_from_domains_are_refused(smtp):
    r = send(smtp, message("a@none.test").replace("From: Someone <a@none.test>", "From: a@none.test, b@other.test"))
    assert r.codes[5] == 554 and r.replies[5].text == "5.7.1 A message must have one From address"


def test_inbound_results_claiming_our_name_are_removed(smtp, key):
    forged = ("Authentication-Results: mx.example.test; dkim=pass header.d=reject.test; dmarc=pass\r\n"
              "Authentication-Results: other.example; spf=pass smtp.mailfrom=x\r\n"
              "Authentication-Results: MX.EXAMPLE.TEST 1; arc=pass\r\n")
    r = send(smtp, forged + message("ceo@reject.test", key, "reject.test"))
    assert r.codes[5] == 250
    values = r.queued[0].header.get_all("Authentication-Results")
    assert "other.example; spf=pass smtp.mailfrom=x" in values
    assert "mx.example.test; dkim=pass header.d=reject.test; dmarc=pass" not in values
    assert "MX.EXAMPLE.TEST 1; arc=pass" not in values and len(values) == 2  # ours (spf, dkim, dmarc), the foreign one
    assert any("spf=" in v and "dkim=pass" in v and "dmarc=pass" in v for v in values)
    assert sum("dmarc=pass (p=reject" in v for v in values) == 1
    names = r.queued[0].header.names()
    assert names[-1] == "Authentication-Results"  # the foreign one, moved below our trace fields
    assert "removing 2 inbound Authentication-Results" in r.log_text


def test_relay_clients_are_not_checked(smtp):
    assert send(smtp, message("ceo@reject.test"), relay_client=True).codes[5] == 250


def test_real_binary_refuses(server, tmp_path):
    cfg = SMTPConfig(tmp_path)
    cfg.write("dns_servers", server.servers_line)
    cfg.plugins("relay", "sender_permitted_from", "dkim", "dmarc", "rcpt_ok", f"queue/maildir {cfg.maildir}")
    r = cfg.run(dialogue("EHLO c.example", "MAIL FROM:<a@elsewhere.test>", "RCPT TO:<bob@example.test>", "DATA",
                         "QUIT", body=message("ceo@reject.test").rstrip("\r\n")))
    assert r.codes == [220, 250, 250, 250, 354, 554, 221], r.log
    assert cfg.messages() == []
