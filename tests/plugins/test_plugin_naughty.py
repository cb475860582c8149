"""naughty: the deferred refusals that badmailfrom, badrcptto, headers... store with `reject naughty`."""

import base64

import pytest
from conftest import SMTPConfig, dialogue

from qpsmtpd_stdio.testing import Harness

MSG = "From: a@example.org\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nSubject: hi\n\nHello."
BAD = "Your envelope sender is in my badmailfrom list"


@pytest.fixture
def smtp(tmp_path):
    h = Harness(tmp_path)
    h.config("rcpthosts", "example.test")
    h.config("badmailfrom", "spammer@example.org")
    h.config("badrcptto", "nobody@example.test")
    return h


def mail(h, sender="spammer@example.org", rcpt="bob@example.test", **kw):
    return h.run("EHLO client.example", f"MAIL FROM:<{sender}>", f"RCPT TO:<{rcpt}>", "DATA", "QUIT", body=MSG, **kw)


MARK = """from qpsmtpd_stdio import DECLINED


def hook_mail(plugin, txn, sender, params):
    if sender.user == "spammer":
        plugin.connection.notes["naughty"] = "Go away"
    return DECLINED
"""


@pytest.mark.parametrize("stage, codes, refused", [
    ("mail", [220, 250, 550, 503, 503, 221], 2),
    ("rcpt", [220, 250, 250, 550, 503, 221], 3),
    ("data", [220, 250, 250, 250, 554, 221], 4),
    ("data_post", [220, 250, 250, 250, 354, 554, 221], 5),
])
def test_badmailfrom_refused_at_the_chosen_stage(smtp, stage, codes, refused):
    smtp.plugins = ["relay", "badmailfrom reject naughty", f"naughty reject {stage}", "rcpt_ok"]
    r = mail(smtp)
    assert r.codes == codes  # badmailfrom notes its reject_type, perm: refused, and the session goes on
    assert r.replies[refused].text.endswith(BAD)
    assert r.queued == []
    assert mail(smtp, sender="good@example.org").codes == [220, 250, 250, 250, 354, 250, 221]


@pytest.mark.parametrize("args, codes", [
    ("", [220, 250, 550]),                                        # default: disconnect
    ("reject_type temp", [220, 250, 450, 503, 503, 221]),
    ("reject_type temp_disconnect", [220, 250, 421]),
])
def test_own_reject_type_when_the_marker_gives_none(smtp, args, codes):
    smtp.plugin("mark", MARK)
    smtp.plugins = ["relay", "mark", f"naughty reject mail {args}".strip(), "rcpt_ok"]
    r = mail(smtp)
    assert r.codes == codes
    assert r.replies[2].text.endswith("Go away")


def test_without_naughty_the_marked_mail_is_accepted(smtp):
    smtp.plugins = ["relay", "badmailfrom reject naughty", "rcpt_ok"]
    r = mail(smtp)
    assert r.codes[-2] == 250
    assert r.connection.notes["naughty"] == BAD


def test_reject_type_of_the_marking_plugin_wins(smtp):
    smtp.plugins = ["relay", "badmailfrom reject naughty reject_type temp", "naughty reject mail", "rcpt_ok"]
    assert mail(smtp).codes == [220, 250, 450, 503, 503, 221]
    smtp.plugins = ["relay", "badmailfrom reject naughty reject_type disconnect", "naughty reject mail reject_type perm",
                    "rcpt_ok"]
    assert mail(smtp).codes == [220, 250, 550]


def test_badrcptto_and_several_marks_make_a_multiline_reply(smtp):
    smtp.plugins = ["relay", "badmailfrom reject naughty", "badrcptto reject naughty", "naughty reject data", "rcpt_ok"]
    r = mail(smtp, rcpt="nobody@example.test")
    assert r.codes == [220, 250, 250, 250, 554, 221]
    assert r.replies[4].lines[0].endswith(BAD)
    assert r.replies[4].lines[1].endswith("mail to nobody@example.test not accepted here")


def test_late_marks_are_refused_at_data_post(smtp):
    smtp.plugins = ["relay", "headers reject naughty", "naughty reject connect", "rcpt_ok"]
    r = smtp.run("EHLO c.example", "MAIL FROM:<good@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                 body="Subject: no from\n\nbody")
    assert r.codes == [220, 250, 250, 250, 354, 554, 221]
    assert "We require a valid From header" in r.replies[5].text


def test_an_unknown_stage_falls_back_to_data_post(smtp):
    smtp.plugins = ["relay", "badmailfrom reject naughty", "naughty reject bogus", "rcpt_ok"]
    r = mail(smtp)
    assert r.codes[:6] == [220, 250, 250, 250, 354, 554]
    assert "is not one of" in r.log_text


def test_authenticated_clients_are_forgiven(smtp):
    smtp.config("tls_before_auth", "0")
    smtp.config("disable_plaintext_auth", "0")
    smtp.config("flat_auth_pw", "user@example.test:secret")
    smtp.plugins = ["relay", "auth/auth_flat_file", "badmailfrom reject naughty", "naughty reject data", "rcpt_ok"]
    token = base64.b64encode(b"\0user@example.test\0secret").decode()
    r = smtp.run("EHLO c.example", f"AUTH PLAIN {token}", "MAIL FROM:<spammer@example.org>",
                 "RCPT TO:<bob@example.test>", "DATA", "QUIT", body=MSG)
    assert r.codes == [220, 250, 235, 250, 250, 354, 250, 221]


def test_real_binary_disconnects_at_rcpt(tmp_path):
    cfg = SMTPConfig(tmp_path)
    cfg.write("badrcptto", "nobody@example.test")
    cfg.plugins("relay", "badrcptto reject naughty reject_type disconnect", "naughty", "rcpt_ok",
                f"queue/maildir {cfg.maildir}")
    r = cfg.run(dialogue("EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<nobody@example.test>",
                         "RCPT TO:<bob@example.test>", "QUIT"))
    assert r.codes == [220, 250, 250, 550]  # naughty's default stage: rcpt; then the connection is closed
    assert r.lines[-1].endswith(b"mail to nobody@example.test not accepted here")
