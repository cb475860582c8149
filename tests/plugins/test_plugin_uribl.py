"""uribl: the links of a message looked up in URI block lists served by a real dnsmasq; bounded on hostile bodies."""

from __future__ import annotations

import pytest
from conftest import dialogue
from dnsserver import dns_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from dns_server(tmp_path_factory, [
        # spam.example is on lists 2 and 8 of a combined zone; an address and a subdomain's parent too
        "host-record=spam.example.multi.uribl.test,127.0.0.10",
        "txt-record=spam.example.multi.uribl.test,\"spam.example is listed: see https://uribl.test/spam\"",
        "host-record=7.2.0.192.multi.uribl.test,127.0.0.2",
        "host-record=evil.co.uk.multi.uribl.test,127.0.0.8",
        "host-record=whitelisted.example.multi.uribl.test,127.0.0.2",
        "host-record=error.example.multi.uribl.test,127.255.255.254",  # the list's error code, not a listing
    ])


@pytest.fixture
def uribl(smtp, server):
    smtp.write("dns_servers", server.servers_line)
    smtp.write("uribl_zones", "multi.uribl.test 2,8 deny")
    smtp.write("uribl_whitelist_domains", "whitelisted.example")
    smtp.plugins("uribl", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    return smtp


def send(smtp, body):
    return smtp.run(dialogue("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                             body="From: <a@example.org>\r\nSubject: s\r\n\r\n" + body))


@pytest.mark.parametrize("body", [
    "Buy now: http://www.spam.example/offer",
    "see https://deep.sub.spam.example/x?y=1",                 # a parent domain is listed
    "soft broken http://sp=\r\nam.example/ link",               # quoted-printable soft line break
    "encoded http://%73pam.example/",                           # %XX
    "encoded http://&#115;pam.example/",                        # &#NN;
    "by address http://192.0.2.7/login",
    "as one number http://3221225991/login",                    # 192.0.2.7
    "in octal and hex http://0300.0x00.02.07/",                 # 192.0.2.7
    "two-level ccTLD http://www.evil.co.uk/",
])
def test_listed_links_are_refused(uribl, body):
    r = send(uribl, body)
    assert r.codes[5] == 554, r.stdout
    assert b"554 5.7.1 " in r.stdout and b" in multi.uribl.test: " in r.stdout


@pytest.mark.parametrize("body", [
    "nothing here", "http://www.clean.example/", "http://whitelisted.example/",
    "http://error.example/",  # 127.255.255.254: the list failing, not a listing
])
def test_clean_links_pass(uribl, body):
    assert send(uribl, body).codes[5] == 250


def test_masks_and_add_header(uribl):
    uribl.write("uribl_zones", "multi.uribl.test 4")  # spam.example answers 127.0.0.10: bits 2 and 8, not 4
    assert send(uribl, "http://spam.example/").codes[5] == 250
    uribl.write("uribl_zones", "multi.uribl.test 8 add-header")
    r = send(uribl, "http://spam.example/")
    assert r.codes[5] == 250
    field = b"X-URIBL-Match: spam.example in multi.uribl.test: spam.example is listed: see https://uribl.test/spam"
    assert [field in message for message in uribl.messages()].count(True) == 1  # the second message only


def test_a_hostile_body_is_bounded(uribl, server):
    before = server.log_text().count("uribl.test")
    body = "\r\n".join(f"http://host{i}.spam{i}.example/ x{i}.y{i}.com" for i in range(20000)) + "\r\n" \
        + ("x" * 900 + "\r\n") * 3000  # 3 MB more, past what is read
    r = send(uribl, body)
    assert r.codes[5] == 250, r.stdout[-300:]
    line = next(line for line in r.log.splitlines() if "names looked up" in line)
    assert line.split("uribl: ")[1].startswith("40 names looked up")  # MAX_NAMES, not 40,000
    assert server.log_text().count("uribl.test") - before <= 2 * 40  # the queries dnsmasq saw: A, and TXT if listed
