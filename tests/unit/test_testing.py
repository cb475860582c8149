"""qpsmtpd_stdio.testing: the in-process harness plugin authors use, tested through the shipped plugins."""

from __future__ import annotations

import re

from conftest import REPO
from qpsmtpd_stdio.testing import TIMEOUT, Harness

SESSION = ("EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT")
BODY = "From: a@example.org\nSubject: hi\n\n.leading dot\nHello."


def test_docstring_example(tmp_path):
    """The example at the top of qpsmtpd_stdio/testing.py, as written there."""
    smtp = Harness(tmp_path, plugins=["badmailfrom", "rcpt_ok"])
    smtp.config("rcpthosts", "example.test")
    smtp.config("badmailfrom", "spammer@example.org")
    r = smtp.run("EHLO c.example", "MAIL FROM:<spammer@example.org>", "QUIT")
    assert r.codes == [220, 250, 550, 221]


def test_replies_log_and_queued_message(tmp_path):
    smtp = Harness(tmp_path, plugins=["relay", "rcpt_ok"])
    smtp.config("rcpthosts", "example.test")
    r = smtp.run(*SESSION[:3], "RCPT TO:<x@elsewhere.example>", *SESSION[3:], body=BODY)
    assert r.codes == [220, 250, 250, 250, 550, 354, 250, 221]
    assert r.replies[4].text == "5.7.1 Relaying denied (#5.7.1)"
    assert r.replies[1].lines[1:3] == ["PIPELINING", "8BITMIME"]
    assert "7 (rcpt) rcpt_ok: returned DENY Relaying denied (#5.7.1)" in r.log
    assert any(level == 6 and message.startswith("session from unknown[192.0.2.10]") for level, _, _, message in r.records)
    [msg] = r.queued
    assert (msg.sender, msg.recipients) == ("a@example.org", ["bob@example.test"])
    assert msg.header.get("Subject") == "hi"
    assert msg.data.startswith(b"Received: from c.example (unknown [192.0.2.10])\r\n")
    assert msg.body == b".leading dot\r\nHello.\r\n"  # sent dot-stuffed, stored unstuffed


def test_own_queue_plugin_runs_and_message_is_still_captured(tmp_path):
    smtp = Harness(tmp_path, plugins=["rcpt_ok", f"queue/maildir {tmp_path / 'Maildir'}"])
    smtp.config("rcpthosts", "example.test")
    r = smtp.run(*SESSION, body=BODY)
    assert r.replies[-2].text.startswith("2.0.0 Queued!")  # queue/maildir answered, not the capture
    assert len(list((tmp_path / "Maildir" / "new").iterdir())) == 1
    assert [m.recipients for m in r.queued] == [["bob@example.test"]]


def test_polite_client_sends_no_body_after_refused_data_and_pipelined_sends_all(tmp_path):
    smtp = Harness(tmp_path, plugins=["rcpt_ok"])
    smtp.plugin("no_data", "from qpsmtpd_stdio import DENY\ndef hook_data(plugin, txn):\n    return DENY, 'no data today'\n")
    smtp.config("plugins", "no_data", "rcpt_ok")
    smtp.config("rcpthosts", "example.test")
    polite = smtp.run(*SESSION, body="Subject: x\n\nbody")
    assert polite.codes == [220, 250, 250, 250, 554, 221]
    pipelined = smtp.run(*SESSION, body="Subject: x\n\nbody", pipelined=True)
    # The body arrives anyway and is read as commands.
    assert pipelined.codes[:5] == [220, 250, 250, 250, 554] and 500 in pipelined.codes
    assert polite.queued == pipelined.queued == []


def test_plugin_failures_and_prints_reach_the_log(tmp_path):
    smtp = Harness(tmp_path, plugins=["boom", "rcpt_ok"])
    smtp.plugin("boom", (
        "def hook_mail(plugin, txn, sender, params):\n"
        "    print('boom saw', sender)\n"
        "    raise KeyError('boom')\n"))
    r = smtp.run("EHLO c.example", "MAIL FROM:<a@example.org>", "QUIT")
    assert r.codes == [220, 250, 450, 221]
    assert "6 (mail) boom saw <a@example.org>" in r.log
    assert "KeyError: 'boom'" in r.log_text and "FATAL PLUGIN ERROR in hook mail" in r.log_text


def test_broken_plugin_and_timeout(tmp_path):
    smtp = Harness(tmp_path, plugins=["half"])
    smtp.plugin("half", "def hook_rcpt(plugin, txn,\n")
    r = smtp.run("EHLO c.example")
    assert r.codes == [421]
    assert "cannot load plugins" in r.log_text
    smtp.config("plugins", "rcpt_ok")
    smtp.config("pre_data_timeout", "0")  # else the silence is reported as "no message within 300s"
    r = smtp.run("EHLO c.example", TIMEOUT, "QUIT")
    assert r.codes == [220, 250, 421]
    assert r.replies[-1].text.endswith("Error: timeout exceeded")


def test_relay_client_and_remote_ip(tmp_path):
    smtp = Harness(tmp_path, plugins=["relay", "rcpt_ok"])
    smtp.config("relayclients", "198.51.100.")
    rcpt = ("EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<x@elsewhere.example>", "QUIT")
    assert smtp.run(*rcpt).codes[3] == 550
    assert smtp.run(*rcpt, relay_client=True).codes[3] == 250
    r = smtp.run(*rcpt, remote_ip="198.51.100.7")
    assert r.codes[3] == 250 and r.connection.relay_client


def python_blocks(path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def test_docs_example_against_the_readme_plugin(tmp_path):
    """docs/testing.md's example, run against the README's example plugin."""
    [plugin] = [b for b in python_blocks(REPO / "README.md") if "no_friday_mail" in b]
    [example] = python_blocks(REPO / "docs" / "testing.md")
    mine = tmp_path / "my_plugins"
    mine.mkdir()
    (mine / "no_friday_mail.py").write_text(plugin)
    namespace: dict = {}
    exec(compile(example.replace("/path/to/my/plugins", str(mine)), "docs/testing.md", "exec"), namespace)
    namespace["test_no_mail_today"](tmp_path / "example")


def test_plugin_timeout_fails_closed_in_process(tmp_path):
    smtp = Harness(tmp_path, plugins=["slow", "rcpt_ok"])
    smtp.config("plugin_timeout", "1")
    smtp.plugin("slow", "import time\ndef hook_mail(plugin, txn, sender, params):\n    time.sleep(30)\n")
    r = smtp.run("EHLO c.example", "MAIL FROM:<a@example.org>", "QUIT")
    assert r.codes == [220, 250, 450, 221]
    assert "ran longer than its time limit" in r.log_text
