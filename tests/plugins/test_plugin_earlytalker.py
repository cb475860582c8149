import socket
import subprocess
import sys

from conftest import BIN, dialogue, simple_session


def patient_session(smtp, data, env=None):
    """Wait for the greeting before sending, as a well-behaved client does."""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([sys.executable, str(BIN)], stdin=theirs, stdout=theirs, stderr=subprocess.PIPE,
                            env=smtp.env(**(env or {})))
    theirs.close()
    ours.settimeout(30)
    out = ours.recv(4096)
    assert out.startswith(b"220 ")
    ours.sendall(data)
    ours.shutdown(socket.SHUT_WR)
    while chunk := ours.recv(65536):
        out += chunk
    proc.wait(timeout=30)
    ours.close()
    return out


def test_early_talker_refused_before_greeting(smtp):
    smtp.plugins("earlytalker wait 1", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(simple_session(), via="socketpair")
    assert r.codes == [554]
    assert b"before SMTP greeting" in r.stdout
    assert smtp.messages() == []


def test_patient_client_is_served(smtp):
    smtp.plugins("earlytalker wait 0.3", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    out = patient_session(smtp, simple_session())
    assert b"\r\n250 2.0.0 Queued" in out
    assert len(smtp.messages()) == 1


def test_action_log_only_logs(smtp):
    smtp.plugins("earlytalker action log", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(simple_session())
    assert r.codes[-2:] == [250, 221]
    assert "early talker" in r.log


def test_temp_rejection_and_debian_name(smtp):
    smtp.plugins("check_earlytalker action denysoft", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    assert smtp.run(simple_session()).codes == [421]


def test_defer_reject_refuses_mail_not_greeting(smtp):
    smtp.plugins("earlytalker defer-reject 1", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(dialogue("EHLO c", "MAIL FROM:<a@b.example>", "QUIT"))
    assert r.codes == [220, 250, 550, 221]


def test_relay_clients_exempt(smtp):
    smtp.plugins("earlytalker", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    assert smtp.run(simple_session(), RELAYCLIENT="").codes[-2:] == [250, 221]


def test_check_at_data(smtp):
    smtp.plugins("earlytalker check-at DATA wait 0.5", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(simple_session())  # the body arrives with DATA, before the 354
    assert r.codes[-1] == 554 and smtp.messages() == []
