"""dkim: signatures made by the test with keys it generates, keys published by a real DNS server (dnsmasq)."""

import base64
import subprocess

import pytest
from conftest import SMTPConfig, dialogue
from dnsserver import dns_server

from qpsmtpd_stdio.testing import Harness

dkim = pytest.importorskip("dkim", reason="dkimpy not installed (pip install 'qpsmtpd-stdio[dkim]')")

MSG = ("From: Alice <alice@signed.test>\r\nTo: bob@example.test\r\nSubject: signed\r\n"
       "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nHello, this is signed.\r\n")


def make_key(tmp_path, name, bits):
    """(PEM private key, base64 DER public key), made by openssl."""
    private = tmp_path / f"{name}.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(private), str(bits)], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return private.read_bytes(), base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keys")
    return {"sel": make_key(tmp, "sel", 1024), "big": make_key(tmp, "big", 2048), "tiny": make_key(tmp, "tiny", 512)}


@pytest.fixture(scope="module")
def server(tmp_path_factory, keys):
    big = f"v=DKIM1; k=rsa; p={keys['big'][1]}"
    yield from dns_server(tmp_path_factory, [
        f'txt-record=sel._domainkey.signed.test,"v=DKIM1; k=rsa; p={keys["sel"][1]}"',
        f'txt-record=big._domainkey.signed.test,"{big[:200]}","{big[200:]}"',  # two strings, one record
        f'txt-record=tiny._domainkey.signed.test,"v=DKIM1; k=rsa; p={keys["tiny"][1]}"',
        f'txt-record=sel._domainkey.other.test,"v=DKIM1; k=rsa; p={keys["sel"][1]}"',
    ])


@pytest.fixture
def smtp(server, tmp_path):
    h = Harness(tmp_path, plugins=["relay", "dkim", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    h.config("dns_servers", server.servers_line)
    h.config("dns_timeout", "0.3")
    return h


def sign(message, key, selector="sel", domain="signed.test", **kw):
    line = dkim.sign(message.encode(), selector.encode(), domain.encode(), key, **kw)
    return line.decode() + message


def send(h, body, **kw):
    return h.run("EHLO client.example", "MAIL FROM:<alice@signed.test>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                 body=body, **kw)


def results(r):
    return r.queued[0].header.get("Authentication-Results")


def test_a_correct_signature_passes(smtp, keys):
    r = send(smtp, sign(MSG, keys["sel"][0]))
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    value = results(r)
    assert value.startswith("mx.example.test; dkim=pass header.d=signed.test header.i=@signed.test header.s=sel "
                            "header.b=")
    assert r.connection.notes["dkim_result"] == "pass"
    assert r.connection.notes["karma"] == 1


def test_a_tampered_message_fails(smtp, keys):
    r = send(smtp, sign(MSG, keys["sel"][0]).replace("this is signed", "this is forged"))
    assert "dkim=fail (body hash mismatch) header.d=signed.test" in results(r)
    r = send(smtp, sign(MSG, keys["sel"][0]).replace("Subject: signed", "Subject: forged"))
    assert "dkim=fail (signature did not verify) header.d=signed.test" in results(r)


def test_every_signature_is_reported(smtp, keys):
    twice = sign(sign(MSG, keys["big"][0], selector="big"), keys["sel"][0], domain="other.test")
    r = send(smtp, twice.replace("Hello", "Hullo"))
    assert results(r).count("dkim=fail") == 2
    r = send(smtp, twice)
    value = results(r)
    assert "dkim=pass header.d=other.test" in value and "dkim=pass header.d=signed.test" in value
    assert "header.s=big" in value  # the 2048-bit key, published as two strings


@pytest.mark.parametrize("selector, domain, expected", [
    ("nokey", "signed.test", "dkim=permerror (no key)"),
    ("tiny", "signed.test", "dkim=policy"),
    ("sel", "x.dead.test", "dkim=temperror"),
    ("sel", "x.servfail.test", "dkim=temperror"),
])
def test_key_problems(smtp, keys, selector, domain, expected):
    key = keys["tiny" if selector == "tiny" else "sel"][0]
    r = send(smtp, sign(MSG, key, selector=selector, domain=domain))
    assert r.codes[5] == 250
    assert f"{expected}" in results(r) and f"header.d={domain}" in results(r)


def test_unsigned_mail_is_none_and_reject_1_refuses_failures(smtp, keys):
    assert results(send(smtp, MSG)) == "mx.example.test; dkim=none"
    smtp.plugins = ["relay", "dkim reject 1", "rcpt_ok"]
    r = send(smtp, sign(MSG, keys["sel"][0]).replace("Hello", "Hullo"))
    assert r.replies[5].code == 554 and r.replies[5].text == "5.7.20 DKIM signature invalid (body hash mismatch)"
    r = send(smtp, sign(MSG, keys["sel"][0], domain="x.dead.test"))
    assert r.replies[5].code == 451 and r.replies[5].text.startswith("4.4.3 DKIM key lookup failed")
    assert send(smtp, sign(MSG, keys["sel"][0])).codes[5] == 250
    assert send(smtp, MSG).codes[5] == 250
    smtp.plugins = ["relay", "dkim reject naughty", "naughty reject data_post", "rcpt_ok"]
    r = send(smtp, sign(MSG, keys["sel"][0]).replace("Hello", "Hullo"))
    assert r.replies[5].code == 554 and "DKIM signature invalid (body hash mismatch)" in r.replies[5].text


def test_results_join_those_of_spf(smtp, keys):
    smtp.plugins = ["relay", "sender_permitted_from", "dkim", "rcpt_ok"]
    r = send(smtp, sign(MSG, keys["sel"][0]))
    values = r.queued[0].header.get_all("Authentication-Results")
    assert any("spf=none smtp.mailfrom=signed.test" in v for v in values)
    assert any("dkim=pass header.d=signed.test" in v for v in values)
    assert all(v.startswith("mx.example.test; ") for v in values)


def test_relay_clients_get_their_mail_signed(smtp, keys, tmp_path):
    smtp.config("dkim/signed.test/selector", "sel")
    smtp.config("dkim/signed.test/private", *keys["sel"][0].decode().strip().split("\n"))
    r = send(smtp, MSG.replace("alice@signed.test", "alice@mail.signed.test"), relay_client=True)
    signed = r.queued[0]
    signature = signed.header.get("DKIM-Signature")
    assert "d=signed.test" in signature and "s=sel" in signature and "c=relaxed/relaxed" in signature
    assert signed.header.get("Authentication-Results") is None  # not verified: ours
    r = send(smtp, signed.data.decode())  # the signed message, delivered to us from outside
    assert "dkim=pass header.d=signed.test header.i=@signed.test header.s=sel" in results(r)
    r = send(smtp, MSG.replace("alice@signed.test", "alice@x/../signed.test"), relay_client=True)
    assert r.codes[5] == 250 and r.queued[0].header.get("DKIM-Signature") is None  # no path into the config dir
    r = send(smtp, MSG.replace("signed.test", "unknown.test"), relay_client=True)
    assert r.queued[0].header.get("DKIM-Signature") is None and "DKIM not configured" in r.log_text


def test_real_binary_verifies(server, keys, tmp_path):
    cfg = SMTPConfig(tmp_path)
    cfg.write("dns_servers", server.servers_line)
    cfg.plugins("relay", "dkim", "rcpt_ok", f"queue/maildir {cfg.maildir}")
    r = cfg.run(dialogue("EHLO c.example", "MAIL FROM:<a@signed.test>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                         body=sign(MSG, keys["sel"][0]).rstrip("\r\n")))
    assert r.codes == [220, 250, 250, 250, 354, 250, 221], r.log
    assert b"\nAuthentication-Results: mx.example.test; dkim=pass header.d=signed.test" in cfg.messages()[0]


def test_dkimpy_is_imported_only_for_a_signed_message_and_without_logging(server, keys, tmp_path):
    cfg = SMTPConfig(tmp_path)
    cfg.write("dns_servers", server.servers_line)
    cfg.plugin("modules", "import sys\nfrom qpsmtpd_stdio import DECLINED\n\ndef hook_data_post(plugin, txn):\n"
                          "    txn.header.add('X-Dkimpy', f\"{'dkim' in sys.modules} {'logging' in sys.modules}\")\n"
                          "    return DECLINED\n")
    cfg.plugins("relay", "dkim", "modules", "rcpt_ok", f"queue/maildir {cfg.maildir}")
    for body in (MSG, sign(MSG, keys["sel"][0])):
        r = cfg.run(dialogue("EHLO c.example", "MAIL FROM:<a@signed.test>", "RCPT TO:<bob@example.test>", "DATA",
                             "QUIT", body=body.rstrip("\r\n")))
        assert r.codes == [220, 250, 250, 250, 354, 250, 221], r.log
    unsigned, signed = sorted(cfg.messages(), key=lambda m: b"DKIM-Signature:" in m)
    assert b"\nX-Dkimpy: False False" in unsigned and b"dkim=none" in unsigned
    assert b"\nX-Dkimpy: True False" in signed and b"dkim=pass" in signed  # dkimpy's logging stood in for


@pytest.mark.parametrize("pad, openssl", [(0, False), (300 * 1024, True)])
def test_dkimpy_loads_and_verifies_without_logging_functools_or_collections(keys, tmp_path, pad, openssl):
    # In a fresh interpreter without site: a wheel install's view (an editable install's finder imports functools).
    # A small message is hashed by the built-in SHA-256, a large one (past BUILTIN_HASH_MAX) by hashlib's OpenSSL.
    import os
    import sys
    from pathlib import Path

    signed = tmp_path / "signed.eml"
    signed.write_text(sign(MSG + ("x" * 70 + "\r\n") * (pad // 72), keys["sel"][0]))
    record = f"v=DKIM1; k=rsa; p={keys['sel'][1]}"
    code = ("import sys; from qpsmtpd_stdio import dkimcheck; m = open(sys.argv[1], 'rb').read();"
            "dkim = dkimcheck.load(len(m)); d = dkim.DKIM(m, logger=dkimcheck._Log());"
            "ok = d.verify(dnsfunc=lambda name, timeout=5: sys.argv[2].encode());"
            "print(ok, *(n in sys.modules for n in ('logging', 'functools', 'collections', '_hashlib')))")
    path = os.pathsep.join([str(Path(__file__).resolve().parents[2]), str(Path(dkim.__file__).parents[1])])
    out = subprocess.run([sys.executable, "-S", "-c", code, str(signed), record], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=path))
    assert out.stdout.split() == ["True", "False", "False", "False", str(openssl)], out.stderr


def test_a_signature_made_with_the_built_in_hashes_verifies_with_openssl(keys, tmp_path):
    import os
    import sys
    from pathlib import Path

    (tmp_path / "m.eml").write_text(MSG)
    (tmp_path / "key.pem").write_bytes(keys["sel"][0])
    code = ("import sys; from qpsmtpd_stdio import dkimcheck; m = open(sys.argv[1], 'rb').read();"
            "lines = dkimcheck.sign(m, 'signed.test', 'sel', open(sys.argv[2]).read());"
            "print('_hashlib' in sys.modules); print('\\r\\n\\t'.join(lines))")
    path = os.pathsep.join([str(Path(__file__).resolve().parents[2]), str(Path(dkim.__file__).parents[1])])
    out = subprocess.run([sys.executable, "-S", "-c", code, str(tmp_path / "m.eml"), str(tmp_path / "key.pem")],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=path))
    loaded, _, value = out.stdout.partition("\n")
    assert loaded == "False", out.stderr
    signed = f"DKIM-Signature: {value.rstrip(chr(10))}\r\n{MSG}".encode()
    record = f"v=DKIM1; k=rsa; p={keys['sel'][1]}".encode()
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record)  # here hashlib is OpenSSL's
