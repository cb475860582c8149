"""rspamd: a real rspamd (Debian's package) with a private config on loopback; GTUBE and its variants for each
action, its milter headers on a clean message, its DKIM signature for an authenticated user (verified), and
rspamd stopped or hanging."""

import base64
import email.utils

import pytest
from engines import GTUBE, Rspamd, Silent, engine, free_port

from qpsmtpd_stdio.testing import Harness

HAM = (f"From: a@example.org\nTo: bob@example.test\nDate: {email.utils.formatdate()}\n"
       "Message-ID: <lunch.1@example.org>\nSubject: lunch\n\nSee you at noon.")


@pytest.fixture(scope="module")
def rspamd():
    yield from engine(Rspamd)


@pytest.fixture
def smtp(rspamd, tmp_path):
    h = Harness(tmp_path, plugins=[f"rspamd 127.0.0.1:{rspamd.port}", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    return h


def send(h, body, **kw):
    return h.run("EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                 body=body, **kw)


def test_gtube_is_rejected_with_rspamds_message(smtp):
    r = send(smtp, HAM.replace("See you at noon.", GTUBE))
    assert r.codes == [220, 250, 250, 250, 354, 554, 221]
    assert r.replies[5].text.startswith("5.7.1 ")
    assert not r.queued
    assert "fail, reject" in r.log_text


def test_clean_message_gets_rspamds_headers(smtp, rspamd):
    r = send(smtp, HAM)
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    header = r.queued[0].header
    result = header.get("X-Spamd-Result")
    assert result and result.startswith("default: False [")  # milter_headers' extended headers, from rspamd
    assert header.get("X-Rspamd-Queue-Id") and header.get("X-Rspamd-Server")
    assert "pass, no action" in r.log_text


def test_forged_rspamd_fields_are_removed_as_rspamd_asks(smtp):
    forged = HAM.replace("Subject: lunch", "Subject: lunch\nX-Spamd-Result: default: False [-99.00 / 15.00]\nX-Spam: No")
    r = send(smtp, forged)
    header = r.queued[0].header
    assert header.count("X-Spamd-Result") == 1 and "-99.00" not in header.get("X-Spamd-Result")
    assert header.get("X-Spam") is None  # remove_headers: X-Spam, 0 (every one)


@pytest.mark.parametrize("pattern, action", [
    ("YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X", "add header"),
    ("ZJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X", "rewrite subject"),
])
def test_tagging_actions(smtp, pattern, action):
    r = send(smtp, HAM.replace("See you at noon.", pattern))
    assert r.codes == [220, 250, 250, 250, 354, 250, 221], r.log_text
    header = r.queued[0].header
    assert f"pass, {action}" in r.log_text
    if action == "add header":
        assert header.get("X-Spam") == "Yes" and header.names()[0] == "X-Spam"
    else:
        assert header.get("Subject") != "lunch" and "lunch" in header.get("Subject")


def test_greylist_defers(smtp, rspamd):
    """rspamd's settings (its settings.conf, chosen by settings_id) greylist from a score of 0.1."""
    smtp.plugins = [f"rspamd 127.0.0.1:{rspamd.port} settings_id test_greylist", "rcpt_ok"]
    r = send(smtp, HAM)
    assert r.codes[5] == 451 and r.replies[5].text == "4.7.1 Try again later"
    assert "fail, greylist" in r.log_text and not r.queued


def test_soft_reject_defers_with_rspamds_message(smtp):
    r = send(smtp, HAM.replace("Subject: lunch", "Subject: soft-reject-me"))
    assert r.codes[5] == 451 and r.replies[5].text == "4.7.1 Soft reject for test"
    assert "fail, soft reject" in r.log_text and not r.queued


def authenticated(smtp, rspamd, body):
    smtp.config("tls_before_auth", "0")
    smtp.config("disable_plaintext_auth", "0")
    smtp.config("flat_auth_pw", "alice@example.org:secret")
    smtp.plugins = ["relay", "auth/auth_flat_file", f"rspamd 127.0.0.1:{rspamd.port}", "rcpt_ok"]
    token = base64.b64encode(b"\0alice@example.org\0secret").decode()
    return smtp.run("EHLO client.example", f"AUTH PLAIN {token}", "MAIL FROM:<alice@example.org>",
                    "RCPT TO:<carol@elsewhere.example>", "DATA", "QUIT", body=body)


def test_authenticated_users_mail_is_signed_and_verifies(smtp, rspamd):
    dkim = pytest.importorskip("dkim", reason="dkimpy (pip install 'qpsmtpd-stdio[dkim]') verifies the signature")
    r = authenticated(smtp, rspamd, HAM.replace("a@example.org", "alice@example.org"))
    assert r.codes == [220, 250, 235, 250, 250, 354, 250, 221], r.log_text
    message = r.queued[0].data
    assert message.count(b"\r\nDKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=test;") == 1
    key = rspamd.public_key()
    assert dkim.verify(message, dnsfunc=lambda name, timeout=5: key if name == b"test._domainkey.example.org." else None)
    assert not dkim.verify(message.replace(b"See you at noon.", b"See you at one."),
                           dnsfunc=lambda name, timeout=5: key)  # the body is covered


def test_authenticated_users_spam_is_not_refused(smtp, rspamd):
    r = authenticated(smtp, rspamd, HAM.replace("See you at noon.", GTUBE))
    assert r.codes == [220, 250, 235, 250, 250, 354, 250, 221], r.log_text
    assert "not refused: relay client or authenticated" in r.log_text


def test_rspamd_down_accepts_with_a_note_or_defers(tmp_path):
    port = free_port()  # nothing listens there
    h = Harness(tmp_path, plugins=[f"rspamd 127.0.0.1:{port}", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    r = send(h, HAM)
    assert r.codes[5] == 250
    assert r.queued[0].header.get("X-Spam-Status") == "Unknown, rspamd unavailable"
    assert f"rspamd 127.0.0.1:{port}:" in r.log_text
    h.plugins = [f"rspamd 127.0.0.1:{port} defer_on_error 1", "rcpt_ok"]
    r = send(h, HAM)
    assert r.codes[5] == 451 and not r.queued


def test_a_hanging_rspamd_times_out(tmp_path):
    silent = Silent()
    try:
        h = Harness(tmp_path, plugins=[f"rspamd 127.0.0.1:{silent.port} timeout 1 defer_on_error 1", "rcpt_ok"])
        h.config("rcpthosts", "example.test")
        r = send(h, HAM)
        assert r.codes[5] == 451 and "timed out" in r.log_text
    finally:
        silent.close()


def test_over_a_unix_socket(smtp, rspamd):
    smtp.plugins = [f"rspamd unix:{rspamd.socket}", "rcpt_ok"]
    r = send(smtp, HAM.replace("See you at noon.", GTUBE))
    assert r.codes[5] == 554


def test_rspamd_proxy_as_a_milter(tmp_path, rspamd):
    """The same rspamd through its milter mode (the milter plugin): GTUBE refused, a clean message tagged."""
    h = Harness(tmp_path, plugins=[f"milter rspamd 127.0.0.1:{rspamd.milter_port}", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    r = send(h, HAM.replace("See you at noon.", GTUBE))
    assert r.codes[5] == 554 and not r.queued, r.log_text
    r = send(h, HAM)
    assert r.codes[5] == 250, r.log_text
    assert r.queued[0].header.get("X-Spamd-Result").startswith("default: False [")
