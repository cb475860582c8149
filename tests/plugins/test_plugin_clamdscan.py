"""virus/clamdscan: a real clamd (Debian's clamav-daemon) on loopback with a one-signature database for EICAR."""

import base64

import pytest
from conftest import SMTPConfig, dialogue
from engines import EICAR, Clamd, Silent, engine, free_port

from qpsmtpd_stdio.testing import Harness

SIGNATURE = "Test.EICAR.UNOFFICIAL"  # clamd adds .UNOFFICIAL to signatures from a local database
CLEAN = "From: a@example.org\r\nTo: bob@example.test\r\nSubject: hello\r\n\r\nNothing to see.\r\n"


def infected(padding: int = 0) -> bytes:
    """A MIME message with EICAR as a base64 attachment, after `padding` octets of text."""
    text = ("filler line of text\r\n" * (padding // 21 + 1))[:padding] if padding else "hi\r\n"
    attachment = base64.encodebytes(EICAR).replace(b"\n", b"\r\n")
    return (b"From: a@example.org\r\nTo: bob@example.test\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n'
            + text.encode() + b"\r\n--b1\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=invoice.com\r\n\r\n"
            + attachment + b"--b1--\r\n.\r\n")


@pytest.fixture(scope="module")
def clamd():
    yield from engine(Clamd)


@pytest.fixture
def smtp(clamd, tmp_path):
    h = Harness(tmp_path, plugins=["relay", f"virus/clamdscan clamd_port {clamd.port} clamd_host 127.0.0.1", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    return h


def send(h, body, **kw):
    return h.run("EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                 body=body, **kw)


def test_eicar_is_refused_with_its_signature_name(smtp):
    r = send(smtp, infected())
    assert r.codes == [220, 250, 250, 250, 354, 554, 221]
    assert r.replies[5].text == f"5.7.1 Virus found: {SIGNATURE}"
    assert r.queued == []
    assert r.connection.notes["karma"] == -1


def test_clean_mail_is_marked_and_forged_marks_are_removed(smtp):
    r = send(smtp, "X-Virus-Found: No\r\nX-Virus-Checked: by nobody\r\n" + CLEAN)
    assert r.codes[5] == 250
    header = r.queued[0].header
    assert header.get_all("X-Virus-Found") == ["No"]
    assert header.get_all("X-Virus-Checked") == ["by ClamAV on mx.example.test"]
    assert header.names()[:2] == ["X-Virus-Found", "X-Virus-Checked"]


def test_virus_deep_in_a_spooled_message_is_found_over_the_unix_socket(smtp, clamd):
    smtp.plugins = ["relay", f"virus/clamdscan clamd_socket {clamd.socket}", "rcpt_ok"]
    smtp.config("size_threshold", "4096")  # spooled to disk, streamed in several chunks
    r = send(smtp, infected(padding=300_000))
    assert r.replies[5].code == 554 and SIGNATURE in r.replies[5].text
    assert send(smtp, CLEAN).codes[5] == 250


def test_deny_viruses_no_accepts_with_headers(smtp, clamd):
    smtp.plugins = ["relay", f"virus/clamdscan clamd_port {clamd.port} clamd_host 127.0.0.1 deny_viruses no", "rcpt_ok"]
    r = send(smtp, infected())
    assert r.codes[5] == 250
    assert r.queued[0].header.get("X-Virus-Found") == "Yes"
    assert r.queued[0].header.get("X-Virus-Details") == SIGNATURE


def test_size_and_multipart_limits_skip_the_scan(smtp, clamd):
    smtp.plugins = ["relay", f"virus/clamdscan clamd_port {clamd.port} clamd_host 127.0.0.1 max_size 1", "rcpt_ok"]
    r = send(smtp, infected(padding=2000))
    assert r.codes[5] == 250 and "skip, too large" in r.log_text
    smtp.plugins = ["relay", f"virus/clamdscan clamd_port {clamd.port} clamd_host 127.0.0.1 scan_all 0", "rcpt_ok"]
    r = send(smtp, CLEAN.replace("hello", "x") + EICAR.decode() + "\r\n")
    assert r.codes[5] == 250 and "skip, not multipart" in r.log_text
    assert send(smtp, infected()).codes[5] == 554


def test_naughty_connections_are_not_scanned(smtp, clamd):
    smtp.config("badmailfrom", "a@example.org")
    smtp.plugins = ["relay", "badmailfrom reject naughty",
                    f"virus/clamdscan clamd_port {clamd.port} clamd_host 127.0.0.1", "rcpt_ok"]
    r = send(smtp, infected())
    assert r.codes[5] == 250 and "skip, naughty" in r.log_text


@pytest.mark.parametrize("where", ["refused", "silent", "nosocket"])
def test_clamd_down_defers_by_default_or_fails_open(tmp_path, where):
    silent = Silent() if where == "silent" else None
    target = {"refused": f"clamd_host 127.0.0.1 clamd_port {free_port()}",
              "silent": f"clamd_host 127.0.0.1 clamd_port {silent and silent.port}",
              "nosocket": f"clamd_socket {tmp_path / 'missing.sock'}"}[where]
    h = Harness(tmp_path, plugins=["relay", f"virus/clamdscan timeout 1 {target}", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    try:
        r = send(h, infected())
        assert r.replies[5].code == 451
        assert r.replies[5].text == "4.3.0 Unable to scan for viruses, try again later"
        assert r.queued == []
        h.plugins = ["relay", f"virus/clamdscan timeout 1 defer_on_error 0 {target}", "rcpt_ok"]
        r = send(h, CLEAN)
        assert r.codes[5] == 250 and r.queued[0].header.get("X-Virus-Found") is None
        assert "clamd" in r.log_text
    finally:
        if silent:
            silent.close()


def test_real_binary_refuses_eicar(clamd, tmp_path):
    cfg = SMTPConfig(tmp_path)
    cfg.plugins("relay", f"virus/clamdscan clamd_port {clamd.port} clamd_host 127.0.0.1", "rcpt_ok",
                f"queue/maildir {cfg.maildir}")
    session = dialogue("EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA")
    r = cfg.run(session + infected() + b"QUIT\r\n")
    assert r.codes == [220, 250, 250, 250, 354, 554, 221]
    assert f"554 5.7.1 Virus found: {SIGNATURE}".encode() in r.lines
    assert cfg.messages() == []
