"""karma: per-IP history in the shared SQLite store, across connections; the penalty box."""

import sqlite3

import pytest
from conftest import SMTPConfig, dialogue

from qpsmtpd_stdio.testing import Harness

MSG = "From: a@example.org\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nSubject: hi\n\nHello."
SCORE = """from qpsmtpd_stdio import DECLINED


def hook_mail(plugin, txn, sender, params):
    if sender.host == "score.test":
        notes = plugin.connection.notes
        notes["karma"] = notes.get("karma", 0) + int(sender.user)
    return DECLINED


def hook_queue_post(plugin, txn):
    plugin.connection.notes["seen_history"] = plugin.connection.notes.get("karma_history")
"""


@pytest.fixture
def smtp(tmp_path):
    h = Harness(tmp_path)
    h.db = tmp_path / "db"
    h.db.mkdir()
    h.config("rcpthosts", "example.test")
    h.config("badmailfrom", "spammer@example.org")
    h.plugin("score", SCORE)
    h.karma = lambda args="": [f"karma db_dir {h.db} {args}".strip(), "relay", "score", "badmailfrom reject naughty",
                               "naughty reject data", "rcpt_ok"]
    return h


def mail(h, sender="good@example.org", **kw):
    return h.run("EHLO client.example", f"MAIL FROM:<{sender}>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                 body=MSG, **kw)


def record(h, ip="192.0.2.10"):
    with sqlite3.connect(h.db / "qpsmtpd.sqlite") as db:
        return db.execute("SELECT naughty, nice, connects, penalty_start > 0 FROM karma WHERE ip = ?", (ip,)).fetchone()


def test_a_naughty_connection_sends_the_client_to_the_penalty_box(smtp):
    smtp.plugins = smtp.karma("reject connect")
    r = mail(smtp, sender="spammer@example.org")
    assert r.codes[:5] == [220, 250, 250, 250, 554]  # refused by naughty at DATA
    assert record(smtp) == (1, 0, 1, 1)
    r = mail(smtp)
    assert r.codes == [554]  # no greeting; reject_type disconnect: closed
    assert r.replies[0].text.startswith("5.7.1 You were naughty. You cannot connect for 1.00 more days.") or \
        r.replies[0].text.startswith("5.7.1 You were naughty. You cannot connect for 0.99 more days.")
    assert record(smtp) == (1, 0, 2, 1)  # counted, not judged again
    assert mail(smtp, remote_ip="192.0.2.99").codes[5] == 250  # another client


def test_default_reject_naughty_leaves_it_to_the_naughty_plugin(smtp):
    smtp.plugins = smtp.karma()
    mail(smtp, sender="spammer@example.org")
    smtp.plugins = smtp.karma()[:1] + ["relay", "naughty reject connect", "rcpt_ok"]
    r = mail(smtp)
    assert r.codes == [554]
    assert "You were naughty" in r.replies[0].text


def test_penalty_ends_and_negative_allows_some_history(smtp):
    smtp.plugins = smtp.karma("reject connect penalty_days 0")
    mail(smtp, sender="spammer@example.org")
    assert mail(smtp).codes[5] == 250  # penalty over at once
    smtp.plugins = smtp.karma("reject connect negative 3")
    mail(smtp, sender="spammer@example.org", remote_ip="192.0.2.20")
    assert mail(smtp, remote_ip="192.0.2.20").codes[5] == 250  # history -1 is above -3
    assert record(smtp, "192.0.2.20") == (1, 0, 2, 0)


def test_good_connections_build_history_other_plugins_can_read(smtp):
    smtp.plugins = smtp.karma("reject connect")
    for _ in range(3):
        r = mail(smtp, sender="3@score.test")  # +3 from a plugin, +1 for the queued message
        assert r.codes[5] == 250
    assert record(smtp) == (0, 3, 3, 0)
    assert r.connection.notes["seen_history"] == 2
    mail(smtp, sender="spammer@example.org")
    assert mail(smtp).codes[5] == 250  # 3 nice, 1 naughty: no penalty


def test_very_bad_karma_is_refused_at_data_and_tlds_cost_karma(smtp):
    smtp.plugins = smtp.karma("reject 1")
    r = mail(smtp, sender="-5@score.test")
    assert r.codes == [220, 250, 250, 250, 554]
    assert r.replies[4].text.endswith("very bad karma: -5")
    smtp.config("karma_tlds", "biz 3", "info 4")
    r = mail(smtp, sender="x@spammy.biz", remote_ip="192.0.2.30")
    assert r.codes[5] == 250 and r.connection.notes["karma"] == -3 + 1
    assert mail(smtp, sender="-2@score.test", remote_ip="192.0.2.31").connection.notes["karma"] == -2 + 1
    assert record(smtp, "192.0.2.31") == (0, 0, 1, 0)  # neither naughty nor nice: counted only


def test_relay_clients_are_neither_judged_nor_recorded(smtp):
    smtp.plugins = smtp.karma("reject connect")
    mail(smtp, sender="-9@score.test", relay_client=True)
    mail(smtp, sender="-9@score.test", remote_ip="192.0.2.40")
    assert record(smtp, "192.0.2.40") == (1, 0, 1, 1)
    assert record(smtp) is None


def test_real_binary_processes_share_the_record(tmp_path):
    cfg = SMTPConfig(tmp_path)
    db = tmp_path / "db"
    db.mkdir()
    cfg.write("badmailfrom", "spammer@example.org")
    cfg.plugins(f"karma db_dir {db} reject connect", "relay", "badmailfrom reject naughty", "naughty reject mail",
                "rcpt_ok", f"queue/maildir {cfg.maildir}")
    r = cfg.run(dialogue("EHLO c.example", "MAIL FROM:<spammer@example.org>", "QUIT"))
    assert r.codes[:3] == [220, 250, 550]
    r = cfg.run(dialogue("EHLO c.example", "QUIT"))
    assert r.codes == [554]
    assert r.lines[0].startswith(b"554 5.7.1 You were naughty. You cannot connect for")


def test_karma_and_greylisting_share_one_store_connection_closed_at_the_end(smtp, monkeypatch):
    from qpsmtpd_stdio import store

    opened = []
    real = store.Store.__init__
    monkeypatch.setattr(store.Store, "__init__", lambda self, *a, **kw: (opened.append(a[0]), real(self, *a, **kw))[1])
    smtp.plugins = smtp.karma() + [f"greylisting db_dir {smtp.db} black_timeout 0"]
    r = mail(smtp)
    assert r.codes[:3] == [220, 250, 450]  # greylisting defers the first time it meets the client
    assert opened == [str(smtp.db / "qpsmtpd.sqlite")] and store._open == {}
    assert mail(smtp).codes == [220, 250, 250, 250, 354, 250, 221]
    assert record(smtp)[2] == 1  # karma read at connect, and wrote at disconnect, on the same connection
    assert len(opened) == 2 and store._open == {}
