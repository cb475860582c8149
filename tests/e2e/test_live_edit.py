"""Live edits under a running xinetd: plugin code, config files and the plugins list change between two
connections, and the second connection follows the edit with no restart and no signal to anyone."""

from __future__ import annotations

import os

import pytest

from superserver import Client, log_to_file, message_ids, send_message, start_xinetd


@pytest.fixture
def xinetd(smtp):
    server = start_xinetd(smtp)
    yield server
    server.stop()


def probe(server, sender: str = "a@example.org", rcpt: str = "probe@example.test") -> list[tuple[int, str]]:
    """EHLO, MAIL, RCPT, QUIT: (code, last line) of each reply after the greeting, stopping at the first 4xx/5xx."""
    client = Client(server.host, server.port)
    try:
        code, lines = client.reply()
        replies = []
        if code != 220:
            return [(code, lines.decode())]
        for line in ("EHLO edit.example", f"MAIL FROM:<{sender}>", f"RCPT TO:<{rcpt}>", "QUIT"):
            client.sock.sendall(line.encode() + b"\r\n")
            code, lines = client.reply()
            replies.append((code, lines.decode().splitlines()[-1]))
            if code >= 400:
                break
        return replies
    finally:
        client.close()


VERDICT = '''from qpsmtpd_stdio import DENY
def hook_rcpt(plugin, txn, rcpt, params):
    return DENY, "verdict {}"
'''


def test_plugin_code_edit_applies_to_next_connection(smtp, xinetd):
    path = smtp.plugin("verdict", VERDICT.format("one"))
    smtp.plugins("verdict", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    assert probe(xinetd)[-1] == (550, "550 5.7.1 verdict one")
    before = os.stat(path)
    # Same size, and the same mtime as before: a cache keyed on (mtime, size) would miss this edit.
    path.write_text(VERDICT.format("two"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert probe(xinetd)[-1] == (550, "550 5.7.1 verdict two")


def test_rcpthosts_and_badmailfrom_edits_apply_to_next_connection(smtp, xinetd):
    smtp.plugins("relay", "badmailfrom", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    assert probe(xinetd, sender="spam@bad.example")[1][0] == 250
    assert probe(xinetd, rcpt="bob@new.example")[2][0] == 550
    smtp.write("badmailfrom", "spam@bad.example")
    smtp.write("rcpthosts", "example.test\nnew.example")
    assert probe(xinetd, sender="spam@bad.example")[1][0] == 550
    assert probe(xinetd, rcpt="bob@new.example")[2][0] == 250
    assert send_message(xinetd.host, xinetd.port, "new-domain@test", rcpt="bob@new.example")[-2:] == [250, 221]
    assert message_ids(smtp.messages()) == ["new-domain@test"]


def test_plugins_list_edit_applies_to_next_connection(smtp, xinetd):
    smtp.plugin("closed", (
        "from qpsmtpd_stdio import DENYSOFT\n"
        "def hook_mail(plugin, txn, sender, params):\n"
        "    return DENYSOFT, 'closed for maintenance'\n"))
    normal = ["relay", "rcpt_ok", f"queue/maildir {smtp.maildir}"]
    assert send_message(xinetd.host, xinetd.port, "before@test")[-2:] == [250, 221]
    smtp.plugins("closed", *normal)
    assert probe(xinetd)[1] == (450, "450 4.7.1 closed for maintenance")
    smtp.plugins(*normal)
    assert send_message(xinetd.host, xinetd.port, "after@test")[-2:] == [250, 221]
    assert sorted(message_ids(smtp.messages())) == ["after@test", "before@test"]


def test_half_saved_plugin_refuses_with_4xx_until_fixed(smtp, xinetd):
    log = smtp.root / "session.log"
    log_to_file(smtp, log)
    good = ("from qpsmtpd_stdio import DECLINED\n"
            "def hook_rcpt(plugin, txn, rcpt, params):\n"
            "    return DECLINED\n")
    path = smtp.plugin("guard", good)
    smtp.plugins("guard", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    # The editor has written the first two lines only.
    path.write_text(good[:good.index("    return")].replace("params):", "params"))
    codes = send_message(xinetd.host, xinetd.port, "while-broken@test")
    assert codes == [421]
    assert smtp.messages() == []
    text = log.read_text()
    assert "cannot load plugins" in text and f"{path}:2" in text, text
    path.write_text(good)
    assert send_message(xinetd.host, xinetd.port, "fixed@test")[-2:] == [250, 221]
    assert message_ids(smtp.messages()) == ["fixed@test"]
