"""The small qpsmtpd plugins: quit_fortune, noop_counter, random_error, loadcheck, help, logging/devnull."""

from __future__ import annotations

import os
import subprocess

import pytest

from qpsmtpd_stdio.testing import Harness

FORTUNE = "/usr/games/fortune"
FALLBACK = ["2.0.0 / Mail is a letter that knows where it is going."]


def harness(tmp_path, *plugins):
    h = Harness(tmp_path, plugins=[*plugins, "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    return h


# quit_fortune -----------------------------------------------------------------------------------------
@pytest.mark.skipif(not os.access(FORTUNE, os.X_OK), reason="fortune is not installed (Debian package fortune-mod)")
def test_fortune_has_a_database():
    # fortune-mod only recommends its data; without it, `fortune -s` says "No fortunes found" and the plugin
    # (rightly) falls back, which would make the next test's failure look like the plugin's.
    done = subprocess.run([FORTUNE, "-s"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr


@pytest.mark.skipif(not os.access(FORTUNE, os.X_OK), reason="fortune is not installed (Debian package fortune-mod)")
def test_quit_fortune_for_helo_clients_only(tmp_path):
    h = harness(tmp_path, "quit_fortune")
    bye = h.run("HELO person.example", "QUIT").replies[-1]
    assert bye.code == 221 and bye.lines[0] == "2.0.0 mx.example.test closing connection."
    assert bye.lines[1:] != FALLBACK and all(line == "2.0.0 /" or line.startswith("2.0.0 / ")
                                                             for line in bye.lines[1:])  # a fortune may hold a blank line
    r = h.run("EHLO mailer.example", "QUIT")
    assert r.replies[-1].lines == ["2.0.0 mx.example.test closing connection. Have a wonderful day."]


def test_quit_fortune_without_the_program(tmp_path):
    h = harness(tmp_path, f"quit_fortune {tmp_path / 'no-fortune'}")
    bye = h.run("HELO person.example", "QUIT").replies[-1]
    assert (bye.code, bye.lines) == (221, ["2.0.0 mx.example.test closing connection.", *FALLBACK])


# noop_counter -----------------------------------------------------------------------------------------
def test_noop_counter_counts_only_noops_in_a_row(tmp_path):
    h = harness(tmp_path, "noop_counter 3")
    r = h.run("EHLO c", "NOOP", "NOOP", "MAIL FROM:<a@example.org>", "NOOP", "NOOP", "NOOP", "QUIT")
    assert r.codes == [220, 250, 250, 250, 250, 250, 250, 500]  # and closed: QUIT is never read
    assert r.replies[-1].text.endswith("Stop wasting my time, too many consecutive NOOPs")


# random_error -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("percent, failing", [("100", True), ("0", False), ("-1", False)])
def test_random_error_fails_at_its_rate_and_only_with_4xx(tmp_path, percent, failing):
    h = harness(tmp_path, f"random_error {percent}")
    for _ in range(5):
        r = h.run("EHLO c", "MAIL FROM:<a@example.org>", "QUIT")
        assert (r.codes[0] == 421 or 450 <= max(r.codes) < 500 or r.codes[-1] == 421) == failing, r.codes
        assert not any(500 <= code < 600 for code in r.codes)


# loadcheck --------------------------------------------------------------------------------------------
def test_loadcheck(tmp_path):
    h = harness(tmp_path, "loadcheck max_load -1")  # any load is above this
    r = h.run("EHLO c", "QUIT")
    assert r.codes == [421] and "Server load too high" in r.replies[0].text
    h = harness(tmp_path, "loadcheck max_load 100000")
    assert h.run("EHLO c", "QUIT").codes == [220, 250, 221]


# logging/devnull --------------------------------------------------------------------------------------
def test_logging_devnull_keeps_nothing(smtp):
    smtp.write("logging", "logging/devnull")
    r = smtp.run(b"EHLO c\r\nQUIT\r\n")
    assert r.codes == [220, 250, 221] and r.stderr == b""
    smtp.write("logging", "")
    assert smtp.run(b"EHLO c\r\nQUIT\r\n").stderr != b""


# help -------------------------------------------------------------------------------------------------
def test_help_files(tmp_path):
    h = harness(tmp_path, "help")
    (h.dir / "help").mkdir()
    (h.dir / "help" / "mail").write_text("MAIL FROM:<address>\nstarts a message\n")
    r = h.run("EHLO c", "HELP", "HELP mail", "HELP RCPT", "HELP ../../etc/passwd", "QUIT")
    assert r.codes == [220, 250, 214, 214, 214, 502, 221]
    assert r.replies[2].text.endswith("Try 'HELP COMMAND' for getting help on COMMAND")
    assert [line.split(" ", 1)[1] for line in r.replies[3].lines] == ["MAIL FROM:<address>", "starts a message"]
    assert r.replies[4].text.endswith("No help available for SMTP command: rcpt")
    assert r.replies[5].text.endswith("Invalid command name")
    h.config("plugins", "help not_implemented 1", "rcpt_ok")
    assert h.run("EHLO c", "HELP", "QUIT").codes == [220, 250, 502, 221]


# content_log ------------------------------------------------------------------------------------------
def test_content_log_keeps_a_copy(smtp):
    import time

    from conftest import dialogue

    smtp.plugins("content_log", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    wire = dialogue("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                    body="From: <a@example.org>\r\nSubject: keep me\r\n\r\nbody")
    assert smtp.run(wire).codes[5] == 250
    log = smtp.dir / "mail" / time.strftime("%Y%m%d")
    text = log.read_bytes()
    assert text.startswith(b"From a@example.org ") and b"\nSubject: keep me\n\nbody\n" in text
    assert (log.stat().st_mode & 0o777, log.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    smtp.write("content_log_enabled", "0")
    smtp.run(wire)
    assert log.read_bytes() == text and len(smtp.messages()) == 2
    smtp.write("content_log_enabled", "1")
    (smtp.root / "a-file").write_text("")
    smtp.write("content_log_file", f"{smtp.root / 'a-file'}/%Y")  # a directory that cannot be
    r = smtp.run(wire)
    assert r.codes[5] == 250 and f"cannot write {smtp.root / 'a-file'}/" in r.log  # a copy, never the delivery


# logging/adaptive -------------------------------------------------------------------------------------
def test_logging_adaptive(smtp):
    from conftest import dialogue

    smtp.write("logging", "logging/adaptive accept LOGNOTICE reject LOGINFO prefix >>")
    smtp.write("badmailfrom", "spammer@example.org")
    smtp.plugins("badmailfrom", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    notice = "from qpsmtpd_stdio import LOGNOTICE\ndef hook_data_post(p, txn):\n    p.log(LOGNOTICE, 'noted')\n"
    smtp.plugin("note", notice)
    smtp.plugins("note", "badmailfrom", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    accepted = smtp.run(dialogue("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                                 body="From: <a@example.org>\r\n\r\nx"))
    assert accepted.codes[5] == 250
    assert ">> note plugin: noted" in accepted.log and ">> badmailfrom plugin:" not in accepted.log  # LOGINFO: no
    refused = smtp.run(dialogue("EHLO c", "MAIL FROM:<spammer@example.org>", "QUIT"))
    assert refused.codes[2] == 550
    assert "badmailfrom plugin: fail" in refused.log.split("\n")[0]  # the refusal's story, up to LOGINFO, first
