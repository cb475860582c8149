"""Every plugin that writes a header, with hostile text in each field it fills.

The text carries `\\`, `"`, `;`, `(`, `)`, CR, LF, NUL and non-ASCII, through
the route a real attacker has: the client's HELO, MAIL FROM, AUTH user and
message; a PTR name served by a DNS server; a DKIM signature; the answer of
a hostile spamd or clamd. In every case the message keeps exactly its
fields plus ours, each of ours is printable ASCII, Authentication-Results
reads back (tests/support/authres.py) with the verdicts in their places,
and comments close where they should.
"""

from __future__ import annotations

import base64
import socket
import threading

import authres
import pytest
from scripteddns import QNAME, ScriptedDNS, record, wire_name

from qpsmtpd_stdio.testing import Harness

EVIL = 'x\\y"z;(w)\r\nX-Injected: 1\x00\u00e9'
ONE_LINE = 'x\\y"z;(w)\x00\x01\u00e9'  # where a line end would only end the field early
SENT = ["From", "To", "Subject", "Date"]
MESSAGE = "From: <a@example.org>\nTo: <bob@example.test>\nSubject: s\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\nbody"
CLIENT = "192.0.2.10"


def fields(data: bytes) -> list[tuple[str, str]]:
    """(name, value) of each field of a queued message, unfolded."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")  # ours are ASCII: a UnicodeError fails the test
    out = []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t"):
            out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
        else:
            name, _, value = line.partition(":")
            out.append((name, value.strip()))
    return out


def check_message(data: bytes, sent: list[str] = SENT) -> dict[str, list[str]]:
    found = fields(data)
    assert all(c == "\t" or " " <= c <= "~" for name, value in found for c in name + value)
    names = [name for name, _ in found]
    assert "X-Injected" not in names and names[-len(sent):] == sent
    by_name: dict[str, list[str]] = {}
    for name, value in found:
        by_name.setdefault(name, []).append(value)
    for value in by_name.get("Authentication-Results", []):
        authres.parse(value)  # raises unless the field is exactly RFC 8601's grammar
    for value in by_name.get("Received", []) + by_name.get("Received-SPF", []):
        comments_close(value)
    return by_name


def comments_close(value: str) -> None:
    """Every comment opened in the value is closed, outside quoted-strings, and no quoted-string is left open."""
    toks = authres.tokens(value.replace("[", " ").replace("]", " ").replace("<", " ").replace(">", " "))
    assert toks  # tokens() raised on anything unbalanced


def results(data: bytes) -> list[dict]:
    [value] = check_message(data)["Authentication-Results"]
    return authres.parse(value)[1]


def expected(value: str) -> str:
    return "".join(c for c in value if " " <= c <= "~")


@pytest.fixture
def dns_answers():
    """A DNS server whose answers a test sets: {(name, type): [records]}; anything else is NXDOMAIN."""
    table: dict = {}
    server = ScriptedDNS(lambda qname, qtype, question: (0, table[qname.lower(), qtype]) if (qname.lower(), qtype)
                         in table else (3, []))
    server.table = table
    yield server
    server.close()


def harness(tmp_path, dns, *plugins) -> Harness:
    h = Harness(tmp_path, plugins=[*plugins, "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    h.config("dns_servers", dns.servers_line)
    h.config("dns_timeout", "1")
    return h


def test_auth_user(tmp_path, dns_answers):
    h = harness(tmp_path, dns_answers, "auth_any")
    h.plugin("auth_any", "from qpsmtpd_stdio import OK\n\ndef hook_auth(plugin, txn, *args):\n    return OK\n")
    for name in ("tls_before_auth", "disable_plaintext_auth", "auth_failure_delay"):
        h.config(name, "0")
    def plain(user):
        return "AUTH PLAIN " + base64.b64encode(f"\0{user}\0pw".encode()).decode()

    assert h.run("EHLO client.example", plain(EVIL.replace("\x00", "")), "QUIT").codes == [220, 250, 501, 221]
    assert h.run("EHLO client.example", plain(ONE_LINE[10:]), "QUIT").codes == [220, 250, 501, 221]  # controls
    user = 'x\\y"z;(w) \u00e9'
    r = h.run("EHLO client.example", plain(user), "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA",
              "QUIT", body=MESSAGE)
    assert r.codes == [220, 250, 235, 250, 250, 354, 250, 221]
    [auth] = results(r.queued[0].data)
    assert (auth["method"], auth["result"], auth["props"]) == ("auth", "pass", {"smtp.auth": expected(user)})


def test_spf_helo_and_envelope(tmp_path, dns_answers):
    helo = 'x\\y"z;(w'  # an open parenthesis: a comment that would never close
    sender = '"a\\\\b\\"c;(d"@example.org'
    dns_answers.table["example.org", 16] = [record(QNAME, 16, b"\x0bv=spf1 -all")]
    h = harness(tmp_path, dns_answers, "spf")
    r = h.run(f"EHLO {helo}", f"MAIL FROM:<{sender}>", "RCPT TO:<bob@example.test>", "DATA", "QUIT", body=MESSAGE)
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    found = check_message(r.queued[0].data)
    [spf] = authres.parse(found["Authentication-Results"][0])[1]
    assert (spf["method"], spf["result"], spf["props"]) == ("spf", "fail", {"smtp.mailfrom": "example.org"})
    [received_spf] = found["Received-SPF"]
    toks = authres.tokens(received_spf)
    assert toks[:2] == [("word", "fail"), ("comment", f"mx.example.test: domain of {sender} does not designate {CLIENT}"
                                                   " as permitted sender")]
    pairs = {toks[i][1]: toks[i + 2][1] for i in range(2, len(toks) - 2) if toks[i + 1] == ("special", "=")}
    assert pairs["envelope-from"] == expected(sender) and pairs["helo"] == helo  # read back whole
    assert found["Received"][0].startswith("from x?y?z??w (")


def test_iprev_name_from_dns(tmp_path, dns_answers):
    labels = (b'x\\y"z;(w)', b"a\r\nX-Injected: 1\x00b", b"example")
    name = ".".join(label.decode("latin-1") for label in labels)
    dns_answers.table["10.2.0.192.in-addr.arpa", 12] = [record(QNAME, 12, wire_name(*labels))]
    dns_answers.table[name.lower(), 1] = [record(QNAME, 1, bytes([192, 0, 2, 10]))]
    h = harness(tmp_path, dns_answers, "fcrdns")
    r = h.run("EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
              body=MESSAGE)
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    found = check_message(r.queued[0].data)
    [iprev] = authres.parse(found["Authentication-Results"][0])[1]
    assert (iprev["method"], iprev["result"], iprev["props"]) == ("iprev", "pass", {"policy.iprev": CLIENT})
    assert iprev["comments"] == [name.replace("\r", " ").replace("\n", " ").replace("\x00", " ")]
    assert "(x?y?z??w?.a??X-Injected:?1?b.example [192.0.2.10])" in found["Received"][0]


def test_dmarc_from_domain_and_dkim_signature(tmp_path, dns_answers):
    pytest.importorskip("dkim")
    pytest.importorskip("publicsuffixlist")
    signature = 'v=1; a=rsa-sha256; d=x\\;"(y; s=s\\"el(; i=@x\\;"(y; h=from; bh=AAAA; b=AB\\"C;'
    body = f"DKIM-Signature: {signature}\n" + MESSAGE.replace("<a@example.org>", '<a@x\\;y=z"(w>')
    h = harness(tmp_path, dns_answers, "dkim", "dmarc reject 0")
    r = h.run("EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
              body=body)
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    found = check_message(r.queued[0].data, sent=["DKIM-Signature", *SENT])
    dkim, dmarc = authres.parse(found["Authentication-Results"][0])[1]
    # `;` ends a tag of DKIM-Signature, so d= and i= end there.
    assert dkim["method"] == "dkim" and dkim["props"]["header.d"] == "x\\" and dkim["props"]["header.i"] == "@x\\"
    assert dkim["props"]["header.s"] == 's\\"el('
    assert (dmarc["method"], dmarc["props"]) == ("dmarc", {"header.from": "x\\;y=z"})  # a quote opens a name


class Peer:
    """A TCP server that reads a request until the client stops sending, then answers `reply` once."""

    def __init__(self, reply: bytes) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, args=(reply,), daemon=True).start()

    def serve(self, reply: bytes) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(5)
            data = b""
            while not data.endswith(b"\0\0\0\0") and (chunk := conn.recv(65536)):
                data += chunk
            conn.sendall(reply)


def test_spamd_answer(tmp_path, dns_answers):
    peer = Peer(b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 7.0 / 5.0\r\n\r\n"
                + ("X-Spam-Status: Yes, score=7.0 required=5.0 tests=" + ONE_LINE + "\r\n\tmore=" + EVIL + "\r\n"
                   "X-Spam-Bad Name: v\r\nX-Spam-Flag: YES\r\n\r\n").encode("utf-8"))
    h = harness(tmp_path, dns_answers, f"spamassassin spamd_socket 127.0.0.1:{peer.port}")
    r = h.run("EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
              body=MESSAGE)
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    found = check_message(r.queued[0].data)
    assert "X-Spam-Bad Name" not in found and found["X-Spam-Flag"] == ["YES"]
    # The line end in EVIL ends that line: "X-Injected: 1" is then a line of spamd's that is not a field of ours.
    assert found["X-Spam-Status"] == ['Yes, score=7.0 required=5.0 tests=x\\y"z;(w)  ? more=x\\y"z;(w)']


def test_clamd_answer(tmp_path, dns_answers):
    peer = Peer(("stream: " + EVIL + " FOUND\0").encode("utf-8"))
    h = harness(tmp_path, dns_answers, f"virus/clamdscan clamd_host 127.0.0.1 clamd_port {peer.port} deny_viruses no")
    r = h.run("EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
              body=MESSAGE)
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    found = check_message(r.queued[0].data)
    assert found["X-Virus-Found"] == ["Yes"]
    assert found["X-Virus-Details"] == ['x\\y"z;(w)  X-Injected: 1 ?']
