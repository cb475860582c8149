"""rcpt_regexp and rcpt_map: recipients answered from lists, as qpsmtpd's plugins do; never a relay."""

from __future__ import annotations

import shutil

import pytest
from conftest import dialogue
import realqpsmtpd

REGEXP = r"""# qpsmtpd's own example, adapted
me@example.test           OK       Accepting mail
/^user\d+\@example\.test$/   OK
info@example.test         DENY     User not found.
/^unused\@.*/             DENY     User not found.
/^(abuse|postmaster)\@/   DECLINED
/^soft\@/                 DENYSOFT Try later.
/^.*\@elsewhere\.example$/  OK      a relay, were it allowed
/^.*$/                    DENY     No such user.
"""
ADDRESSES = ["me@example.test", "ME@Example.Test", "user12@example.test", "userx@example.test", "info@example.test",
             "unused@example.test", "postmaster@example.test", "soft@example.test", "x@elsewhere.example"]


def rcpt_codes(run, addresses):
    return [run(dialogue("EHLO c", "MAIL FROM:<a@example.org>", f"RCPT TO:<{a}>", "QUIT"))[3] for a in addresses]


def test_rcpt_regexp_answers_as_qpsmtpd(smtp):
    smtp.write("rcpt_regexp", REGEXP)
    smtp.plugins("rcpt_regexp", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    ours = rcpt_codes(lambda data: smtp.run(data).codes, ADDRESSES)
    # the x@elsewhere.example line says OK, but that would relay: rcpt_ok refuses it
    assert ours == [250, 250, 250, 550, 550, 550, 250, 450, 550]
    r = smtp.run(dialogue("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<x@elsewhere.example>", "QUIT"))
    assert "we do not take mail for elsewhere.example: no relaying" in r.log
    assert smtp.run(dialogue("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<x@elsewhere.example>", "QUIT"),
                    RELAYCLIENT="").codes[3] == 250  # a relay client may


@pytest.mark.skipif(not realqpsmtpd.AVAILABLE, reason=realqpsmtpd.SKIP_REASON)
def test_rcpt_regexp_codes_match_the_real_qpsmtpd(smtp, tmp_path):
    config = tmp_path / "qp"
    config.mkdir()
    for name in ("me", "rcpthosts"):
        shutil.copy(smtp.dir / name, config / name)
    (config / "rcpt_regexp").write_text(REGEXP.replace("/^.*\\@elsewhere\\.example$/  OK      a relay, were it allowed\n",
                                                       ""))
    (config / "plugin_dirs").write_text("/usr/share/qpsmtpd/plugins\n")
    (config / "plugins").write_text(f"rcpt_regexp\nrcpt_ok\nqueue/maildir {tmp_path / 'Maildir'}\n")
    smtp.write("rcpt_regexp", (config / "rcpt_regexp").read_text())
    smtp.plugins("rcpt_regexp", "rcpt_ok", f"queue/maildir {smtp.maildir}")

    def qpsmtpd(data):
        return realqpsmtpd.codes(realqpsmtpd.session(config, data, tmp_path / "qp.log"))

    addresses = ADDRESSES[:-1]
    assert rcpt_codes(lambda data: smtp.run(data).codes, addresses) == rcpt_codes(qpsmtpd, addresses)


def test_rcpt_map(smtp):
    smtp.write("map_example_test", "# valid users\nbob@example.test OK\ngone@example.test DENY Moved away.\n")
    smtp.plugins("rcpt_map domain example.test file map_example_test default DENY=No_such_user_here", "rcpt_ok",
                 f"queue/maildir {smtp.maildir}")
    codes = rcpt_codes(lambda data: smtp.run(data).codes, ["bob@example.test", "BOB@example.test", "gone@example.test",
                                                         "nobody@example.test", "x@other.example"])
    assert codes == [250, 250, 550, 550, 550]  # the last: not the map's domain, and rcpt_ok refuses the relay
    r = smtp.run(dialogue("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<nobody@example.test>", "QUIT"))
    assert r.lines[-2] == b"550 5.7.1 No such user here"


def test_rcpt_map_needs_a_map(smtp):
    smtp.plugins("rcpt_map domain example.test file missing_map", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(b"EHLO c\r\nQUIT\r\n")
    assert r.codes == [421]  # fail closed: no mail for users that may not exist
