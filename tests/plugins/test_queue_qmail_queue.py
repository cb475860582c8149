"""plugins/queue/qmail-queue.py with a stand-in qmail-queue written by the test.

qmail is not packaged in Debian 12, so the program here is a small sh script
that does what qmail-queue(8) does with its descriptors: it reads the message
from fd 0 to its end, then the envelope from fd 1, records both, and exits
with the status the test asks for.
"""

import os
import re

import pytest
from conftest import dialogue

BODY = "From: a@example.org\r\nMessage-Id: <q1@example.org>\r\nSubject: qq\r\n\r\nHello.\r\n..dot\r\nend"


@pytest.fixture
def qq(tmp_path, smtp):
    script = tmp_path / "qmail-queue"
    script.write_text(f"""#!/bin/sh
cat > {tmp_path}/message
cat <&1 > {tmp_path}/envelope
echo "pid $$" > {tmp_path}/ran
[ -f {tmp_path}/sleep ] && exec sleep 30
[ -f {tmp_path}/say ] && cat {tmp_path}/say >&2
exit $(cat {tmp_path}/status 2>/dev/null || echo 0)
""")
    script.chmod(0o755)
    smtp.plugins("relay", "rcpt_ok", f"queue/qmail-queue {script}")
    return tmp_path


def send(smtp, *rcpts, sender="a@example.org", body=BODY, **env):
    lines = ["EHLO client.example", f"MAIL FROM:<{sender}>"] + [f"RCPT TO:<{r}>" for r in rcpts] + ["DATA", "QUIT"]
    return smtp.run(dialogue(*lines, body=body), **env)


def test_message_on_fd0_envelope_on_fd1(smtp, qq):
    r = send(smtp, "bob@example.test", "carol@example.test")
    assert re.search(rb"\r\n250 2\.0\.0 Queued! \d+ qp \d+ <q1@example\.org>\r\n", r.stdout), r.stdout
    assert (qq / "envelope").read_bytes() == b"Fa@example.org\0Tbob@example.test\0Tcarol@example.test\0\0"
    message = (qq / "message").read_bytes()
    assert message.startswith(b"Received: from client.example") and b"\r" not in message
    assert message.endswith(b"\n\nHello.\n.dot\nend\n")


def test_null_sender(smtp, qq):
    send(smtp, "bob@example.test", sender="")
    assert (qq / "envelope").read_bytes() == b"F\0Tbob@example.test\0\0"


@pytest.mark.parametrize("status,code,text", [
    (11, 554, b"5.1.3 envelope address too long for qq"),
    (31, 554, b"5.3.0 mail server permanently rejected message"),
    (53, 451, b""), (71, 451, b""), (81, 451, b""), (99, 451, b""),
])
def test_exit_status_mapped(smtp, qq, status, code, text):
    (qq / "status").write_text(str(status))
    r = send(smtp, "bob@example.test")
    assert r.codes[-2] == code, r.stdout
    assert text in r.stdout
    assert b"Queued!" not in r.stdout


def test_stderr_is_logged_not_sent_to_the_client(smtp, qq):
    (qq / "say").write_text("disk on fire\n")
    (qq / "status").write_text("53")
    r = send(smtp, "bob@example.test")
    assert "said: disk on fire" in r.log and b"disk on fire" not in r.stdout


def test_envelope_with_nul_or_control_octet_is_refused_before_running(smtp, qq):
    smtp.plugin("poison", """
from qpsmtpd_stdio.address import Address
def hook_data_post(plugin, txn):
    txn.recipients.append(Address(plugin.args[0].replace("NUL", "\\0").replace("LF", "\\n"), "evil.example"))
""")
    for poison in ("xNULTvictim", "xLFy"):
        smtp.plugins("relay", "rcpt_ok", f"poison {poison}", f"queue/qmail-queue {qq / 'qmail-queue'}")
        r = send(smtp, "bob@example.test")
        assert r.codes[-2] == 451 and "control octet in envelope address" in r.log
        assert not (qq / "ran").exists()


def test_qmailqueue_environment_overrides_the_argument(smtp, qq):
    smtp.plugins("relay", "rcpt_ok", "queue/qmail-queue /nonexistent/qmail-queue")
    r = send(smtp, "bob@example.test", QMAILQUEUE=str(qq / "qmail-queue"))
    assert r.codes[-2] == 250 and (qq / "ran").exists()


def test_missing_program_is_451(smtp, qq):
    smtp.plugins("relay", "rcpt_ok", "queue/qmail-queue /nonexistent/qmail-queue")
    r = send(smtp, "bob@example.test")
    assert r.codes[-2] == 451 and "cannot run /nonexistent/qmail-queue" in r.log


def test_hung_program_is_killed_and_451(smtp, qq):
    (qq / "sleep").write_text("")
    smtp.plugins("relay", "rcpt_ok", f"queue/qmail-queue {qq / 'qmail-queue'} timeout 1")
    r = send(smtp, "bob@example.test")
    assert r.codes[-2] == 451 and "still running after 1s; killed" in r.log
    pid = int((qq / "ran").read_text().split()[1])
    assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()


def test_exit_0_without_reading_the_message_is_not_success(smtp, tmp_path):
    script = tmp_path / "lazy-queue"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    smtp.plugins("relay", "rcpt_ok", f"queue/qmail-queue {script}")
    big = BODY + "\r\n" + ("z" * 70 + "\r\n") * 20_000  # 1.4 MB: more than a pipe holds
    r = send(smtp, "bob@example.test", body=big)
    assert r.codes[-2] == 451 and "did not read the whole message" in r.log
