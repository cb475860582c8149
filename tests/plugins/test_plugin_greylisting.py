"""greylisting: triplets in the shared SQLite store, one process per connection, many at once."""

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import SMTPConfig, dialogue

from qpsmtpd_stdio.testing import Harness

MSG = "From: a@example.org\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nSubject: hi\n\nHello."


@pytest.fixture
def smtp(tmp_path):
    h = Harness(tmp_path)
    h.db = tmp_path / "db"
    h.db.mkdir()
    h.config("rcpthosts", "example.test")
    h.grey = lambda args="": ["relay", f"greylisting db_dir {h.db} {args}".strip(), "rcpt_ok"]
    return h


def mail(h, sender="a@example.org", rcpt="bob@example.test", **kw):
    return h.run("EHLO client.example", f"MAIL FROM:<{sender}>", f"RCPT TO:<{rcpt}>", "DATA", "QUIT", body=MSG, **kw)


def rows(h):
    with sqlite3.connect(h.db / "qpsmtpd.sqlite") as db:
        return db.execute("SELECT key, black, white FROM greylist ORDER BY key").fetchall()


def test_first_attempt_deferred_retry_after_the_black_period_accepted(smtp):
    smtp.plugins = smtp.grey("black_timeout 0")
    r = mail(smtp)
    assert r.codes == [220, 250, 450, 503, 503, 221]
    assert r.replies[2].text.endswith("This mail is temporarily denied")
    r = mail(smtp)
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    assert rows(smtp) == [("192.0.2.10", 0, 1)]
    assert mail(smtp).codes[2] == 250  # whitelisted: each delivery renews it
    assert rows(smtp) == [("192.0.2.10", 0, 2)]
    assert mail(smtp, remote_ip="192.0.2.11").codes[2] == 450  # another host is new


def test_retry_within_the_black_period_is_deferred_again(smtp):
    smtp.plugins = smtp.grey()  # default black_timeout: 50 minutes
    assert mail(smtp).codes[2] == 450
    assert mail(smtp).codes[2] == 450
    assert rows(smtp) == [("192.0.2.10", 1, 0)]


def test_expired_window_and_whitelisting_start_over(smtp):
    smtp.plugins = smtp.grey("black_timeout 0 grey_timeout 0")
    assert mail(smtp).codes[2] == 450
    assert mail(smtp).codes[2] == 450  # retried after the grey window: new again
    smtp.plugins = smtp.grey("black_timeout 0")
    assert mail(smtp).codes[2] == 450  # the record lapsed with its (empty) grey window: new again
    assert mail(smtp).codes[2] == 250
    smtp.plugins = smtp.grey("black_timeout 0 white_timeout 0")
    assert mail(smtp).codes[2] == 450  # whitelisting ran out


def test_sender_in_the_triplet(smtp):
    smtp.plugins = smtp.grey("black_timeout 0 sender 1")
    assert mail(smtp).codes[2] == 450
    assert mail(smtp).codes[2] == 250
    assert mail(smtp, sender="other@example.org").codes[2] == 450
    assert [k for k, _, _ in rows(smtp)] == ["192.0.2.10|a@example.org", "192.0.2.10|other@example.org"]


def test_recipient_mode_defers_at_rcpt_and_bounces_at_data(smtp):
    smtp.plugins = smtp.grey("black_timeout 0 recipient 1")
    r = mail(smtp)
    assert r.codes == [220, 250, 250, 450, 503, 221]
    assert mail(smtp).codes[2:6] == [250, 250, 354, 250]
    assert [k for k, _, _ in rows(smtp)] == ["192.0.2.10|bob@example.test"]
    r = mail(smtp, sender="", rcpt="carol@example.test")
    assert r.codes == [220, 250, 250, 250, 451, 221]  # a null sender passes RCPT, is deferred at DATA
    assert r.replies[4].text.endswith("This mail is temporarily denied")


def test_deny_late_and_reject_0(smtp):
    smtp.plugins = smtp.grey("deny_late 1")
    r = mail(smtp)
    assert r.codes == [220, 250, 250, 250, 451, 221]
    smtp.plugins = smtp.grey("reject 0")
    r = mail(smtp, remote_ip="192.0.2.12")
    assert r.codes[2:6] == [250, 250, 354, 250]
    assert ("192.0.2.12", 0, 0) in rows(smtp)  # recorded all the same


def test_config_file_defaults_and_qpsmtpd_mode(smtp):
    smtp.config("denysoft_greylist", "black_timeout 0", "sender 1")
    smtp.plugins = smtp.grey()
    assert mail(smtp).codes[2] == 450
    assert mail(smtp).codes[2] == 250
    assert rows(smtp)[0][0] == "192.0.2.10|a@example.org"
    smtp.plugins = smtp.grey("mode testonly")
    assert mail(smtp, remote_ip="192.0.2.13").codes[2] == 250


def test_relay_clients_are_not_greylisted_and_a_broken_store_fails_open(smtp, tmp_path):
    smtp.plugins = smtp.grey()
    assert mail(smtp, relay_client=True).codes[2] == 250
    (tmp_path / "notadir").write_text("")
    smtp.plugins = ["relay", f"greylisting db_dir {tmp_path / 'notadir'}", "rcpt_ok"]
    r = mail(smtp)
    assert r.codes[2] == 250
    assert "qpsmtpd.sqlite" in r.log_text


def test_twenty_parallel_connections_share_one_database(tmp_path):
    """Each session is its own process, as under a superserver; none may fail or lose an update."""
    db = tmp_path / "db"
    for d in (db, tmp_path / "a", tmp_path / "b"):
        d.mkdir()
    cfg, slow = SMTPConfig(tmp_path / "a"), SMTPConfig(tmp_path / "b")
    cfg.plugins("relay", f"greylisting db_dir {db} black_timeout 0", "rcpt_ok", f"queue/maildir {cfg.maildir}")
    slow.plugins("relay", f"greylisting db_dir {db}", "rcpt_ok", f"queue/maildir {cfg.maildir}")
    session = dialogue("EHLO c.example", "MAIL FROM:<a@example.org>", "MAIL FROM:<a@example.org>",
                       "RCPT TO:<bob@example.test>", "QUIT")
    same = dialogue("EHLO c.example", "MAIL FROM:<a@example.org>", "QUIT")

    def run(i):
        return cfg.run(session, TCPREMOTEIP=f"198.51.100.{i + 1}"), slow.run(same, TCPREMOTEIP="203.0.113.9")

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(run, range(20)))
    for own, shared in results:
        assert own.codes == [220, 250, 450, 250, 250, 221], own.log  # deferred, then the retry passes
        assert "store error" not in own.log + shared.log
    with sqlite3.connect(db / "qpsmtpd.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT count(*) FROM greylist WHERE white = 1").fetchone() == (20,)
        # 20 attempts from one host at once: one created the triplet, each other one counted exactly once.
        shared_row = conn.execute("SELECT black, white FROM greylist WHERE key = '203.0.113.9'").fetchone()
    assert [s.codes for _, s in results] == [[220, 250, 450, 221]] * 20
    assert shared_row == (19, 0)
