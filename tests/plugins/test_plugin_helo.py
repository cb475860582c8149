"""plugins/helo.py: policies lenient/rfc/strict, config/badhelo, reject and reject_type, X-HELO."""

import pytest
from conftest import dialogue


def hello(smtp, name, verb="EHLO", **env):
    return smtp.run(dialogue(f"{verb} {name}", "MAIL FROM:<a@example.org>", "QUIT"), **env)


def refused(r, text):
    """Refused with 550 and the connection closed (the default reject_type is disconnect)."""
    return r.codes == [220, 550] and r.lines[-1] == f"550 5.7.1 {text}".encode()


@pytest.fixture
def helo(smtp):
    smtp.write("badhelo", "aol.com\nYahoo.com\n^friend\\d+\\.\n")
    smtp.plugins("helo", "relay", "rcpt_ok")
    return smtp


@pytest.mark.parametrize("verb", ["HELO", "EHLO"])
def test_badhelo_name_refused_and_disconnected(helo, verb):
    assert refused(hello(helo, "AOL.com", verb), "I do not believe you are aol.com.")
    assert refused(hello(helo, "yahoo.COM", verb), "I do not believe you are yahoo.com.")


def test_badhelo_pattern_refused(helo):
    assert refused(hello(helo, "friend42.example"), "Your HELO hostname is not allowed")
    assert hello(helo, "myfriend42.example").codes == [220, 250, 250, 221]


def test_every_badhelo_line_is_checked(helo):
    # qpsmtpd 0.94 stops at the first pattern line; a name listed after it must still be refused.
    helo.write("badhelo", "^nomatch$\n!\\.\nspammer.example\n")
    assert refused(hello(helo, "spammer.example"), "I do not believe you are spammer.example.")


def test_negated_pattern_refuses_names_that_do_not_match(helo):
    helo.write("badhelo", "!\\.")
    assert refused(hello(helo, "nodot"), "Your HELO hostname is not allowed")
    assert hello(helo, "has.dot.example").codes == [220, 250, 250, 221]


def test_bad_pattern_skipped(helo):
    helo.write("badhelo", "(unclosed\naol.com\n")
    r = hello(helo, "aol.com")
    assert refused(r, "I do not believe you are aol.com.")
    assert "bad pattern '(unclosed' skipped" in r.log


@pytest.mark.parametrize("name, ip, text", [
    ("localhost", "192.0.2.10", "You are not localhost"),
    ("[192.0.2.99]", "192.0.2.10", "Forged IPs not accepted here"),
    ("[IPv6:2001:db8::99]", "2001:db8::10", "Forged IPs not accepted here"),
    ("192.0.2.10", "192.0.2.10", "Plain IP is invalid HELO hostname (RFC 2821)"),
    ("2001:db8::10", "2001:db8::10", "Plain IP is invalid HELO hostname (RFC 2821)"),
])
def test_lenient_checks_refuse(helo, name, ip, text):
    assert refused(hello(helo, name, TCPREMOTEIP=ip), text)


@pytest.mark.parametrize("name, ip", [
    ("localhost", "127.0.0.1"),
    ("localhost", "::1"),
    ("[192.0.2.10]", "192.0.2.10"),
    ("[IPv6:2001:DB8:0::10]", "2001:db8::10"),
    ("nodots", "192.0.2.10"),          # lenient does not ask for a FQDN
    ("under_score.example", "192.0.2.10"),
])
def test_lenient_accepts(helo, name, ip):
    assert hello(helo, name, TCPREMOTEIP=ip).codes == [220, 250, 250, 221]


@pytest.mark.parametrize("policy", ["rfc", "strict"])
def test_rfc_wants_a_fqdn(helo, policy):
    helo.plugins(f"helo policy {policy}", "relay", "rcpt_ok")
    assert refused(hello(helo, "nodots"), "HELO name is not fully qualified. Read RFC 2821")
    assert refused(hello(helo, "under_score.example"), "HELO name contains invalid FQDN characters. Read RFC 1035")
    assert hello(helo, "mail.example.org").codes == [220, 250, 250, 221]


def test_rfc_accepts_own_address_literal_strict_does_not(helo):
    helo.plugins("helo policy rfc", "relay", "rcpt_ok")
    assert hello(helo, "[192.0.2.10]").codes == [220, 250, 250, 221]
    helo.plugins("helo policy strict", "relay", "rcpt_ok")
    assert refused(hello(helo, "[192.0.2.10]"), "RFC 2821 allows an address literal, but we do not")


def test_unknown_policy_fails_closed(helo):
    helo.plugins("helo policy paranoid", "relay", "rcpt_ok")
    r = hello(helo, "mail.example.org")
    assert r.codes == [421] and "unknown policy 'paranoid'" in r.log


def test_reject_0_only_logs(helo):
    helo.plugins("helo reject 0", "relay", "rcpt_ok")
    r = hello(helo, "aol.com")
    assert r.codes == [220, 250, 250, 221]
    assert "fail, tolerated: in badhelo" in r.log


@pytest.mark.parametrize("reject_type, codes", [("perm", [220, 550, 250, 221]), ("temp", [220, 450, 250, 221])])
def test_reject_type_without_disconnect(helo, reject_type, codes):
    helo.plugins(f"helo reject_type {reject_type}", "relay", "rcpt_ok")
    r = helo.run(dialogue("EHLO aol.com", "EHLO mail.example.org", "QUIT"))
    assert r.codes == codes


def test_relay_client_not_checked(helo):
    assert hello(helo, "aol.com", RELAYCLIENT="").codes == [220, 250, 250, 221]


def test_x_helo_header_replaces_the_clients(helo):
    helo.plugins("helo", "relay", "rcpt_ok", f"queue/maildir {helo.maildir}")
    r = helo.run(dialogue("EHLO mail.example.org", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>",
                          "DATA", "QUIT", body="X-HELO: forged.example\r\nSubject: x\r\n\r\nhi"))
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    [msg] = helo.messages()
    assert msg.count(b"X-HELO:") == 1 and b"\nX-HELO: mail.example.org\n\n" in msg
    assert msg.startswith(b"Return-Path: <a@example.org>\nDelivered-To: bob@example.test\nReceived: ")
