"""config/session_record: one well-formed JSON line per session, appended by many processes at once."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import BIN, dialogue, simple_session

DENY_X = """from qpsmtpd_stdio import DENY
def hook_rcpt(plugin, txn, rcpt, params):
    if rcpt.user == "x":
        return DENY, "not x"
"""
JSON_LOADED = """import sys
from qpsmtpd_stdio import LOGWARN
def hook_post_connection(plugin, txn):
    plugin.log(LOGWARN, f"json loaded: {'json' in sys.modules}")
"""
BODY = "From: a@example.org\r\nSubject: r\r\n\r\nhello"


def records(smtp) -> list[dict]:
    return [json.loads(line) for line in (smtp.dir / "sessions.jsonl").read_text().splitlines()]


def test_one_line_with_every_field(smtp):
    smtp.write("session_record", "sessions.jsonl")
    smtp.plugin("deny_x", DENY_X)
    smtp.plugins("deny_x", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(dialogue("EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<x@example.test>",
                          "RCPT TO:<bob@example.test>", "RCPT TO:<carol@example.test>", "DATA", "BOGUS", "QUIT",
                          body=BODY))
    assert r.codes == [220, 250, 250, 550, 250, 250, 354, 250, 500, 221], r.stdout
    [rec] = records(smtp)
    [msg] = smtp.messages()
    assert rec["client_ip"] == "192.0.2.10" and rec["client_port"] == 40000
    assert rec["helo"] == "client.example" and rec["tls"] is None and rec["auth_user"] is None
    assert rec["sender"] == "<a@example.org>" and rec["recipients"] == 2
    assert rec["queue_id"] and f"id {rec['queue_id']}".encode() in msg
    assert rec["size"] == len(BODY) + 2
    assert rec["messages"] == [{"queue_id": rec["queue_id"], "sender": "<a@example.org>", "recipients": 2,
                                "size": len(BODY) + 2, "code": 250}]
    assert {"hook": "rcpt", "plugin": "deny_x", "verdict": "DENY"} in rec["verdicts"]
    assert {"hook": "rcpt", "plugin": "rcpt_ok", "verdict": "OK"} in rec["verdicts"]
    assert {"hook": "queue", "plugin": f"queue/maildir", "verdict": "OK"} in rec["verdicts"]
    assert rec["code"] == 500 and rec["result"].startswith("500 ") and rec["errors"] == 1
    assert rec["duration"] >= 0 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rec["start"])


def test_a_session_without_mail_is_recorded_too(smtp):
    smtp.write("session_record", str(smtp.root / "abs.jsonl"))
    smtp.run(dialogue("HELO c", "QUIT"))
    [rec] = [json.loads(line) for line in (smtp.root / "abs.jsonl").read_text().splitlines()]
    assert rec["messages"] == [] and rec["queue_id"] is None and rec["code"] is None and rec["helo"] == "c"


def test_json_is_imported_only_when_configured(smtp):
    smtp.plugin("json_loaded", JSON_LOADED)
    smtp.plugins("json_loaded", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    assert "json loaded: False" in smtp.run(simple_session()).log
    assert not (smtp.dir / "sessions.jsonl").exists()
    smtp.write("session_record", "sessions.jsonl")
    smtp.run(simple_session())
    assert len(records(smtp)) == 1  # json is imported at the end, for the one line


def test_unwritable_record_does_not_hurt_the_session(smtp):
    smtp.write("session_record", str(smtp.root / "no" / "such" / "dir" / "x.jsonl"))
    r = smtp.run(simple_session())
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    assert "cannot write the session record" in r.log
    assert len(smtp.messages()) == 1


def test_100_parallel_sessions_give_100_whole_lines(smtp):
    smtp.write("session_record", "sessions.jsonl")
    smtp.write("loglevel", "3")
    # Long lines make interleaving visible if writes were not single appends.
    rcpts = [f"RCPT TO:<user{i:03d}-{'p' * 40}@example.test>" for i in range(60)]
    data = dialogue("EHLO client.example", "MAIL FROM:<a@example.org>", *rcpts, "DATA", "QUIT", body=BODY)

    def one(port: int) -> int:
        env = smtp.env(TCPREMOTEPORT=str(port))
        return subprocess.run([sys.executable, str(BIN)], input=data, capture_output=True, env=env,
                              timeout=120).returncode

    with ThreadPoolExecutor(max_workers=100) as pool:
        assert list(pool.map(one, range(50000, 50100))) == [0] * 100
    text = (smtp.dir / "sessions.jsonl").read_text()
    lines = text.splitlines()
    assert len(lines) == 100 and text.endswith("\n")
    recs = [json.loads(line) for line in lines]
    assert sorted(rec["client_port"] for rec in recs) == list(range(50000, 50100))
    assert all(rec["recipients"] == 60 and rec["code"] == 250 for rec in recs)
    assert len({rec["queue_id"] for rec in recs}) == 100


def test_record_to_syslog(smtp):
    from test_plugin_logging_syslog import can_unshare, run_with_syslog

    if not can_unshare():
        pytest.skip("needs unshare -m (root in a mount namespace)")
    smtp.write("session_record", "syslog")
    out, _, records = run_with_syslog(smtp, simple_session())
    assert out.split(b"\r\n")[-3].startswith(b"250 ")
    lines = [r for r in records if r[2] == "qpsmtpd-stdio" and r[4].startswith("{")]
    assert len(lines) == 1
    facility, severity, _, _, message = lines[0]
    assert (facility, severity) == (2, 6)  # mail.info
    assert json.loads(message)["client_ip"] == "192.0.2.10"
    assert not (smtp.dir / "syslog").exists()
