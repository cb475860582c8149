"""The shipped plugins' replies next to the real qpsmtpd 0.94's (Debian package), same config, same input.

Replies are compared without our RFC 3463 enhanced codes and without qpsmtpd's trailing `(#5.x.y)`.
Known, deliberate differences (see each plugin's documentation) are asserted as such.
"""

import shutil

import pytest
import realqpsmtpd
from conftest import dialogue

pytestmark = pytest.mark.skipif(not realqpsmtpd.AVAILABLE, reason=realqpsmtpd.SKIP_REASON)


def replies(stdout):
    """[(code, "text of all lines")] with enhanced codes and qpsmtpd's (#x.y.z) removed."""
    out, pending = [], []
    for line in stdout.decode("utf-8", "replace").split("\r\n"):
        if len(line) < 4:
            continue
        text = line[4:]
        head = text.split(" ", 1)
        if len(head[0]) >= 5 and head[0][0] in "245" and head[0][1] == "." and head[0].replace(".", "").isdigit():
            text = head[1] if len(head) > 1 else ""
        if text.endswith(")") and " (#" in text:
            text = text[:text.rindex(" (#")]
        pending.append(text)
        if line[3] == " ":
            out.append((int(line[:3]), " / ".join(pending)))
            pending = []
    return out


def both(smtp, plugins, data, **env):
    """Run `data` through us and through qpsmtpd with the same config; return both reply lists.

    A queue plugin is always listed: without one, qpsmtpd 0.94 loads every plugin twice.
    """
    if not any(p.startswith("queue/") for p in plugins):
        plugins = [*plugins, "queue/maildir {maildir}"]
    smtp.plugins(*(p.format(maildir=smtp.maildir) for p in plugins))
    ours = smtp.run(data, **env)
    odir = smtp.root / "oracle" / "config"
    odir.mkdir(parents=True)
    for f in smtp.dir.iterdir():
        if f.name not in ("plugin_dirs", "loglevel", "plugins"):
            shutil.copy(f, odir / f.name)
    (odir / "plugin_dirs").write_text("/usr/share/qpsmtpd/plugins\n")
    (odir / "plugins").write_text("\n".join(p.format(maildir=smtp.root / "oracle" / "Maildir") for p in plugins) + "\n")
    oenv = {k: v for k, v in smtp.env(**env).items() if k.startswith(("TCP", "RELAYCLIENT"))}
    theirs = realqpsmtpd.session(odir, data, smtp.root / "oracle" / "qpsmtpd.log", timeout=120, **oenv)
    return replies(ours.stdout), replies(theirs)


def test_badmailfrom(smtp):
    smtp.write("badmailfrom", "bad@example.org\n@spam.example\n^bounce-.*@lists\\.example$ Go away\n")
    ours, theirs = both(smtp, ["badmailfrom", "relay", "rcpt_ok"], dialogue(
        "EHLO c.example", "MAIL FROM:<BAD@example.org>", "MAIL FROM:<x@spam.example>",
        "MAIL FROM:<bounce-1@lists.example>", "MAIL FROM:<good@example.org>", "QUIT"))
    assert ours[2:6] == theirs[2:6]
    assert theirs[2] == (550, "Your envelope sender is in my badmailfrom list")


def test_badrcptto(smtp):
    smtp.write("badrcptto", "nobody@example.test\n")
    ours, theirs = both(smtp, ["badrcptto", "relay", "rcpt_ok"], dialogue(
        "EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<nobody@example.test>", "RCPT TO:<bob@example.test>",
        "QUIT"))
    assert ours[3:5] == theirs[3:5]
    assert theirs[3] == (550, "mail to nobody@example.test not accepted here")


def test_count_unrecognized_commands(smtp):
    ours, theirs = both(smtp, ["count_unrecognized_commands 3", "relay", "rcpt_ok"], dialogue(
        "EHLO c.example", "FOO", "BAR x", "BAZ", "QUIT"))
    assert ours[2:] == theirs[2:]
    assert theirs[-1] == (521, "Closing connection, 3 unrecognized commands. Perhaps you should read RFC 2821?")


@pytest.mark.parametrize("name", ["aol.com", "localhost", "[192.0.2.99]", "192.0.2.10"])
def test_helo_lenient(smtp, name):
    smtp.write("badhelo", "aol.com\n")
    ours, theirs = both(smtp, ["helo", "relay", "rcpt_ok"], dialogue(f"EHLO {name}", "NOOP", "QUIT"))
    assert len(theirs) == 2 and theirs[1][0] == 550  # refused, then the connection is closed
    assert ours[1:] == theirs[1:]


def test_dont_require_anglebrackets(smtp):
    ours, theirs = both(smtp, ["dont_require_anglebrackets", "relay", "rcpt_ok"], dialogue(
        "EHLO c.example", "MAIL FROM:a@example.org", "RCPT TO:bob@example.test", "QUIT"))
    assert ours[2:4] == theirs[2:4]
    assert theirs[2] == (250, "<a@example.org>, sender OK - how exciting to get mail from you!")


def data_session(head):
    return dialogue("EHLO c.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                    body=head + "\r\n\r\nHello.")


def test_headers_date_in_the_past(smtp):
    # qpsmtpd answers data_post DENY with 552; we answer 554 (RFC 5321 4.2.5: 554 "Transaction failed").
    plugins = ["headers past 15", "relay", "rcpt_ok", "queue/maildir {maildir}"]
    ours, theirs = both(smtp, plugins, data_session("From: a@example.org\r\nDate: Mon, 1 Jan 2001 00:00:00 +0000"))
    assert ours[5][1] == theirs[5][1] == "The Date header is too far in the past"
    assert (ours[5][0], theirs[5][0]) == (554, 552)


def test_headers_missing_from(smtp):
    # qpsmtpd 0.94 answers "552 901" here (it passes the reject type as the message); we name the problem.
    ours, theirs = both(smtp, ["headers require From", "relay", "rcpt_ok", "queue/maildir {maildir}"],
                        data_session("Subject: x"))
    assert theirs[5] == (552, "901")
    assert ours[5] == (554, "We require a valid From header")


@pytest.mark.parametrize("received, refused", [(3, False), (4, True)])
def test_loop(smtp, received, refused):
    head = "\r\n".join(f"Received: from h{i}.example by x; Mon, 1 Jan 2024 00:00:00 +0000" for i in range(received))
    ours, theirs = both(smtp, ["loop 5", "relay", "rcpt_ok", "queue/maildir {maildir}"],
                        data_session(head + "\r\nFrom: a@example.org"))
    if refused:
        assert ours[5][1] == theirs[5][1] == "Too many hops"
        assert (ours[5][0], theirs[5][0]) == (554, 552)
    else:
        assert ours[5][0] == theirs[5][0] == 250
