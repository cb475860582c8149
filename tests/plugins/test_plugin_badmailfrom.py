"""plugins/badmailfrom.py: config/badmailfrom entries (address, @host, regex, reason) and its arguments."""

import time

import pytest
from conftest import REPO, dialogue

DEFAULT = b"550 5.7.1 Your envelope sender is in my badmailfrom list\r\n"
BADMAILFROM = """\
# comment
bad@example.org
@spam.example
^bounce-.*@lists\\.example$   Your right-hand side VERP doesn't fool me
a+b@example.org
"""


@pytest.fixture
def bmf(smtp):
    smtp.write("badmailfrom", BADMAILFROM)
    smtp.plugins("badmailfrom", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    return smtp


def mail(smtp, sender, **env):
    return smtp.run(dialogue("EHLO client.example", f"MAIL FROM:<{sender}>", "RCPT TO:<bob@example.test>", "QUIT"),
                    **env)


@pytest.mark.parametrize("sender", ["bad@example.org", "BAD@Example.ORG", "x@spam.example", "y@SPAM.example"])
def test_listed_sender_refused_at_mail_and_transaction_reset(bmf, sender):
    r = mail(bmf, sender)
    r.assert_wellformed()
    assert r.codes == [220, 250, 550, 503, 221]
    assert r.lines[-3] + b"\r\n" == DEFAULT


@pytest.mark.parametrize("sender", ["good@example.org", "bad@sub.spam.example", "bad@example.org.test",
                                    "xbad@example.org"])
def test_unlisted_sender_accepted(bmf, sender):
    r = mail(bmf, sender)
    assert r.codes == [220, 250, 250, 250, 221]


def test_regex_entry_with_reason(bmf):
    r = mail(bmf, "bounce-123-bob=example.test@lists.example")
    assert b"550 5.7.1 Your right-hand side VERP doesn't fool me\r\n" in r.stdout
    assert mail(bmf, "bounce-1@lists.example.net").codes[2] == 250  # anchored with $


def test_entry_with_regex_characters_also_matches_literally(bmf):
    # `+` makes qpsmtpd read the line as a regex, which never matches the address itself.
    assert mail(bmf, "a+b@example.org").codes[2] == 550


def test_null_sender_never_matched(bmf):
    bmf.write("badmailfrom", "^.*$\n@\n")
    assert mail(bmf, "").codes[2] == 250
    assert mail(bmf, "x@example.org").codes[2] == 550


def test_bad_pattern_logged_and_skipped(bmf):
    bmf.write("badmailfrom", "^(unclosed\nbad@example.org\nnoatsign\n")
    r = mail(bmf, "bad@example.org")
    assert r.codes[2] == 550
    assert "bad pattern '^(unclosed' skipped" in r.log
    r = mail(bmf, "noatsign@example.org")
    assert r.codes[2] == 250 and "no @ in 'noatsign'" in r.log


def test_catastrophic_pattern_fails_closed(bmf):
    bmf.write("badmailfrom", "^(a+)+$\n")
    bmf.write("plugin_timeout", "1")
    start = time.monotonic()
    r = mail(bmf, "a" * 40 + "@example.org")
    assert time.monotonic() - start < 15
    assert r.codes[2] in (450, 451), r.stdout


def test_reject_0_only_logs(bmf):
    bmf.plugins("badmailfrom reject 0", "relay", "rcpt_ok")
    r = mail(bmf, "bad@example.org")
    assert r.codes == [220, 250, 250, 250, 221]
    assert "fail, tolerated: bad@example.org matches bad@example.org" in r.log


def test_reject_type_temp(bmf):
    bmf.plugins("badmailfrom reject_type temp", "relay", "rcpt_ok")
    assert b"450 4.7.1 Your envelope sender is in my badmailfrom list\r\n" in mail(bmf, "bad@example.org").stdout


def test_reject_type_disconnect(bmf):
    bmf.plugins("badmailfrom reject 1 reject_type disconnect", "relay", "rcpt_ok")
    r = mail(bmf, "bad@example.org")
    assert r.codes == [220, 250, 550]  # nothing after: the connection is closed


def test_reject_naughty_stores_note_for_later(bmf):
    bmf.plugin("shownaughty", (
        "from qpsmtpd_stdio import DENY\n"
        "def hook_rcpt(plugin, txn, rcpt, params):\n"
        "    return DENY, 'naughty=' + plugin.connection.notes.get('naughty', '')\n"))
    bmf.plugins("badmailfrom reject naughty", "shownaughty", "rcpt_ok")
    r = mail(bmf, "x@spam.example")
    assert r.codes[2] == 250
    assert b"550 5.7.1 naughty=Your envelope sender is in my badmailfrom list\r\n" in r.stdout


def test_relay_client_not_checked(bmf):
    assert mail(bmf, "bad@example.org", RELAYCLIENT="").codes[2] == 250


def test_socketpair_session(bmf):
    r = bmf.run(dialogue("HELO c.example", "MAIL FROM:<bad@example.org>", "QUIT"), via="socketpair")
    r.assert_wellformed()
    assert r.codes == [220, 250, 550, 221]


def test_overlong_input_never_reaches_a_regex():
    ns = load("badmailfrom")
    logged = []
    fake = type("P", (), {"log": lambda self, level, msg: logged.append(msg)})()
    assert ns["matches"](fake, "a" * 400 + "@x.example", "x.example", "^a") is False
    assert "not matched against pattern" in logged[0]
    assert ns["matches"](fake, "a" * 40 + "@x.example", "x.example", "^a") is True


def load(name):
    path = REPO / "plugins" / f"{name}.py"
    namespace = {"__name__": "plugin_under_test"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace
