"""plugins/queue/sendmail.py: through Postfix's own sendmail (-C, a private instance) into a Maildir,
and with a recording stand-in for the argument vector and the exit statuses."""

import json

import pytest
from conftest import dialogue
from downstream import Postfix

BODY = ("From: a@example.org\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-Id: <s1@example.org>\r\n"
        "Subject: sendmail\r\n\r\nHello.\r\n..\r\n..leading dot\r\nlast line")
SENT_BODY = b"Hello.\n.\n.leading dot\nlast line\n"  # `-i`: the lone dot line does not end it


@pytest.fixture(scope="module")
def postfix():
    pf = Postfix({"smtp": ""}, users=("bob", "carol", "nul", "back"))
    pf.start()
    yield pf
    pf.stop()


@pytest.fixture
def recorder(tmp_path, smtp):
    script = tmp_path / "sendmail"
    script.write_text(f"""#!/usr/bin/python3
import json, sys
data = sys.stdin.buffer.read()
open("{tmp_path}/argv", "w").write(json.dumps(sys.argv[1:]))
open("{tmp_path}/message", "wb").write(data)
try:
    status = int(open("{tmp_path}/status").read())
except OSError:
    status = 0
sys.exit(status)
""")
    script.chmod(0o755)
    smtp.plugins("relay", "rcpt_ok", f"queue/sendmail {script}")
    return tmp_path


def send(smtp, *rcpts, sender="a@example.org", body=BODY):
    lines = ["EHLO client.example", f"MAIL FROM:<{sender}>"] + [f"RCPT TO:<{r}>" for r in rcpts] + ["DATA", "QUIT"]
    return smtp.run(dialogue(*lines, body=body))


def test_end_to_end_through_postfix_sendmail(smtp, postfix):
    smtp.plugins("relay", "rcpt_ok", f"queue/sendmail {postfix.sendmail} -C {postfix.etc}")
    r = send(smtp, "bob@example.test", "carol@example.test")
    assert r.codes[-2] == 250 and b"250 2.0.0 Queued by sendmail" in r.stdout, r.log
    for user in ("bob", "carol"):
        [msg] = postfix.messages(user)
        head, body = msg.split(b"\n\n", 1)
        assert body == SENT_BODY
        assert head.startswith(b"Return-Path: <a@example.org>\n")
        assert b"by mx.example.test (qpsmtpd-stdio" in head and b"Message-Id: <s1@example.org>" in head


def test_null_sender_through_postfix(smtp, postfix):
    smtp.plugins("relay", "rcpt_ok", f"queue/sendmail {postfix.sendmail} -C {postfix.etc}")
    assert send(smtp, "nul@example.test", sender="").codes[-2] == 250
    [msg] = postfix.messages("nul")
    assert msg.startswith(b"Return-Path: <>\n")


def test_postfix_down_is_451_then_retry_delivers_once(smtp, postfix, tmp_path):
    # Postfix's sendmail queues through postdrop even with the daemons down; what fails is a missing
    # queue: point -C at a config whose queue_directory does not exist.
    broken = tmp_path / "etc"
    broken.mkdir()
    (broken / "main.cf").write_text((postfix.etc / "main.cf").read_text().replace(
        f"queue_directory = {postfix.spool}", f"queue_directory = {tmp_path}/no-queue"))
    smtp.plugins("relay", "rcpt_ok", f"queue/sendmail {postfix.sendmail} -C {broken}")
    r = send(smtp, "back@example.test")
    assert r.codes[-2] == 451 and "failed for" in r.log
    assert postfix.messages("back") == []
    smtp.plugins("relay", "rcpt_ok", f"queue/sendmail {postfix.sendmail} -C {postfix.etc}")
    assert send(smtp, "back@example.test").codes[-2] == 250
    assert len(postfix.messages("back")) == 1


def test_argv_without_a_shell(smtp, recorder):
    r = send(smtp, "bob@example.test", "-oQ/tmp@example.test", '"a;$(touch x)"@example.test', sender="")
    assert r.codes[-2] == 250, r.stdout
    argv = json.loads((recorder / "argv").read_text())
    assert argv == ["-i", "-f", "<>", "--", "bob@example.test", "-oQ/tmp@example.test", '"a;$(touch x)"@example.test']
    assert (recorder / "message").read_bytes().endswith(b"\n\n" + SENT_BODY)
    assert not (recorder / "x").exists()


@pytest.mark.parametrize("status,code", [(75, 451), (67, 554), (68, 554), (65, 554), (78, 451), (64, 451), (1, 451)])
def test_exit_status_mapped(smtp, recorder, status, code):
    (recorder / "status").write_text(str(status))
    r = send(smtp, "bob@example.test")
    assert r.codes[-2] == code, r.stdout
    assert b"Queued" not in r.stdout


def test_missing_program_is_451(smtp):
    smtp.plugins("relay", "rcpt_ok", "queue/sendmail /nonexistent/sendmail")
    r = send(smtp, "bob@example.test")
    assert r.codes[-2] == 451 and "cannot run /nonexistent/sendmail" in r.log


def test_later_queue_plugin_takes_over_after_a_temporary_failure(smtp, recorder):
    (recorder / "status").write_text("75")
    smtp.plugins("relay", "rcpt_ok", f"queue/sendmail {recorder / 'sendmail'}", f"queue/maildir {smtp.maildir}")
    r = send(smtp, "bob@example.test")
    assert r.codes[-2] == 250 and b"Queued!" in r.stdout
    assert len(smtp.messages()) == 1
