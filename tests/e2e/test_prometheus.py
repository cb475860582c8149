"""config/prometheus_textfile: counters for node_exporter's textfile collector, updated by many processes at once."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from conftest import BIN, dialogue

DENY_X = """from qpsmtpd_stdio import DENY
def hook_rcpt(plugin, txn, rcpt, params):
    if rcpt.user == "x":
        return DENY, "not x"
"""
BODY = "From: a@example.org\r\nSubject: p\r\n\r\nhello"
LINE = re.compile(r'^(# (HELP|TYPE) \S+ .+|[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-z_]+="[^"\\]*"(,[a-z_]+="[^"\\]*")*\})? \d+)$')


def parse(text: str) -> dict[str, int]:
    assert text.endswith("\n")
    counts = {}
    for line in text.splitlines():
        assert LINE.match(line), line
        if not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            counts[key] = int(value)
    return counts


def setup(smtp):
    smtp.write("prometheus_textfile", "metrics.prom")
    smtp.plugin("deny_x", DENY_X)
    smtp.plugins("deny_x", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")


def test_counters_of_one_session(smtp):
    setup(smtp)
    r = smtp.run(dialogue("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<x@example.test>",
                          "RCPT TO:<bob@example.test>", "DATA", "QUIT", body=BODY))
    assert r.codes == [220, 250, 250, 550, 250, 354, 250, 221], r.stdout
    counts = parse((smtp.dir / "metrics.prom").read_text())
    assert counts["qpsmtpd_sessions_total"] == 1
    assert counts['qpsmtpd_sessions_by_result_total{result="2xx"}'] == 1
    assert counts["qpsmtpd_messages_accepted_total"] == 1
    assert counts['qpsmtpd_rejections_total{hook="rcpt",plugin="deny_x"}'] == 1
    assert not (smtp.dir / "sessions.jsonl").exists()  # the JSON record is separate
    smtp.run(dialogue("HELO c", "QUIT"))
    counts = parse((smtp.dir / "metrics.prom").read_text())
    assert counts["qpsmtpd_sessions_total"] == 2 and counts['qpsmtpd_sessions_by_result_total{result="none"}'] == 1
    assert counts["qpsmtpd_messages_accepted_total"] == 1


def test_unwritable_textfile_does_not_hurt_the_session(smtp):
    smtp.write("prometheus_textfile", str(smtp.root / "no" / "such" / "x.prom"))
    smtp.plugins("relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(dialogue("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                          body=BODY))
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    assert "cannot update the Prometheus textfile" in r.log


def test_50_parallel_sessions_lose_no_increment(smtp):
    setup(smtp)
    smtp.write("loglevel", "3")
    good = dialogue("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<x@example.test>",
                    "RCPT TO:<bob@example.test>", "DATA", "QUIT", body=BODY)
    prom = smtp.dir / "metrics.prom"
    bad_reads, stop = [], threading.Event()

    def watch():  # the file is always whole while others rewrite it
        while not stop.is_set():
            try:
                parse(prom.read_text())
            except FileNotFoundError:
                pass
            except AssertionError as exc:
                bad_reads.append(str(exc))

    def one(port: int) -> int:
        env = smtp.env(TCPREMOTEPORT=str(port))
        return subprocess.run([sys.executable, str(BIN)], input=good, capture_output=True, env=env,
                              timeout=120).returncode

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=50) as pool:
            assert list(pool.map(one, range(50000, 50050))) == [0] * 50
    finally:
        stop.set()
        watcher.join()
    assert bad_reads == []
    counts = parse(prom.read_text())
    assert counts["qpsmtpd_sessions_total"] == 50
    assert counts['qpsmtpd_sessions_by_result_total{result="2xx"}'] == 50
    assert counts["qpsmtpd_messages_accepted_total"] == 50
    assert counts['qpsmtpd_rejections_total{hook="rcpt",plugin="deny_x"}'] == 50
    assert len(smtp.messages()) == 50
    assert not [p for p in smtp.dir.iterdir() if p.name.startswith(".prom-")]
