"""session.py, in-process through testing.Harness: what the session itself logs."""

from __future__ import annotations

import base64

import pytest

from qpsmtpd_stdio.testing import Harness

PLAIN = base64.b64encode(b"\0bob@example.test\0s3cret-Passw0rd").decode()
USER = base64.b64encode(b"bob@example.test").decode()
PASSWORD = base64.b64encode(b"s3cret-Passw0rd").decode()
SECRETS = (PLAIN, USER, PASSWORD, "s3cret", PLAIN[4:20], PASSWORD[2:14])


@pytest.fixture
def smtp(tmp_path):
    h = Harness(tmp_path, plugins=["auth/auth_flat_file", "rcpt_ok"])
    h.config("flat_auth_pw", "bob@example.test:s3cret-Passw0rd")
    h.config("tls_before_auth", "0")
    h.config("disable_plaintext_auth", "0")
    h.config("loglevel", "7")
    h.config("transcript", str(tmp_path / "transcript"))
    return h


def leaked(result, transcript) -> list[str]:
    texts = [record[3] for record in result.records] + [transcript.read_text() if transcript.exists() else ""]
    return [secret for secret in SECRETS for text in texts if secret in text]


def splits(wire: bytes):
    for cut in range(1, len(wire)):
        yield [wire[:cut], wire[cut:]]


@pytest.mark.parametrize("pieces", list(splits(f"AUTH PLAIN {PLAIN}\r\n".encode())))
def test_plain_initial_response_never_logged_however_split(smtp, tmp_path, pieces):
    r = smtp.run("EHLO c.example", *pieces, "QUIT")
    assert r.codes == [220, 250, 235, 221], r.output
    assert not leaked(r, tmp_path / "transcript")
    assert any("<- 'AUTH PLAIN ***'" in record[3] for record in r.records)


@pytest.mark.parametrize("pieces", list(splits(f"AUTH LOGIN\r\n{USER}\r\n{PASSWORD}\r\n".encode())))
def test_login_exchange_never_logged_however_split(smtp, tmp_path, pieces):
    r = smtp.run("EHLO c.example", *pieces, "QUIT")
    assert r.codes[-2:] == [235, 221], r.output
    assert not leaked(r, tmp_path / "transcript")


def test_commands_are_logged_at_debug(smtp):
    r = smtp.run("EHLO c.example", "NOOP", "QUIT")
    lines = [record[3] for record in r.records]
    assert "<- 'EHLO c.example'" in lines and "<- 'NOOP'" in lines and "<- 'QUIT'" in lines


def test_a_plugin_may_take_its_own_mail_parameter(tmp_path):
    h = Harness(tmp_path, plugins=["takes_trace", "rcpt_ok"])
    h.plugin("takes_trace", '''from qpsmtpd_stdio import DECLINED, LOGWARN
def register(plugin):
    plugin.mail_parameters = ("X-TRACE",)
def hook_mail(plugin, txn, sender, params):
    plugin.log(LOGWARN, f"trace={params.get('X-TRACE')}")
    return DECLINED
''')
    r = h.run("EHLO c.example", "MAIL FROM:<a@example.org> X-TRACE=42", "RCPT TO:<b@example.test> X-TRACE=1", "QUIT")
    assert r.codes == [220, 250, 250, 555, 221], r.output
    assert any(record[3] == "trace=42" for record in r.records)
    plain = Harness(tmp_path / "plain", plugins=["rcpt_ok"])
    assert plain.run("EHLO c.example", "MAIL FROM:<a@example.org> X-TRACE=42", "QUIT").codes == [220, 250, 555, 221]
