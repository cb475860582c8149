"""whitelist: listed hosts, HELO names, senders and recipients get past the plugins after it; never a relay."""

from __future__ import annotations

from conftest import dialogue

REFUSE_ALL = """from qpsmtpd_stdio import DENY
def hook_connect(plugin, txn):
    return DENY, "refused at connect"
def hook_helo(plugin, txn, host):
    return DENY, "refused at helo"
hook_ehlo = hook_helo
def hook_mail(plugin, txn, sender, params):
    return DENY, "refused at mail"
def hook_rcpt(plugin, txn, rcpt, params):
    return DENY, "refused at rcpt"
"""


def setup(smtp, **files):
    smtp.plugin("refuse_all", REFUSE_ALL)
    for name, text in files.items():
        smtp.write(name, text)
    smtp.plugins("whitelist", "refuse_all", "rcpt_ok", f"queue/maildir {smtp.maildir}")


def session(smtp, helo="c.example", sender="a@example.org", rcpt="bob@example.test", **env):
    r = smtp.run(dialogue(f"EHLO {helo}", f"MAIL FROM:<{sender}>", f"RCPT TO:<{rcpt}>", "QUIT"), **env)
    r.assert_wellformed()
    return r


def test_nothing_listed_nothing_passes(smtp):
    setup(smtp)
    assert session(smtp).codes == [554, 503, 503, 503, 221]  # a 554 greeting serves only QUIT


def test_whitelisted_host_skips_the_connect_checks(smtp):
    setup(smtp, whitelisthosts="192.0.2.0/24")
    r = session(smtp)
    assert r.codes == [220, 550, 503, 503, 221]  # past connect; helo is still checked
    assert "pass, is a whitelisted host" in r.log
    assert session(smtp, TCPREMOTEIP="198.51.100.7").codes[0] == 554


def test_whitelistclient_from_the_environment(smtp):
    setup(smtp)
    assert session(smtp, WHITELISTCLIENT="").codes[0] == 220


def test_helo_sender_and_recipient_lists(smtp):
    setup(smtp, whitelisthosts="192.0.2.10", whitelisthelo="Friend.Example", whitelistsenders="example.org",
          whitelistrcpt="bob@example.test\nelsewhere.example")
    assert session(smtp, helo="friend.example").codes == [220, 250, 250, 250, 221]
    assert session(smtp, helo="friend.example", sender="a@other.example").codes[2] == 550  # the mail check ran
    # whitelistrcpt never opens a relay: elsewhere.example is listed, but it is not a domain we take mail for
    r = session(smtp, helo="friend.example", rcpt="x@elsewhere.example")
    assert r.codes[3] == 550 and "we do not take mail for elsewhere.example: no relaying" in r.log
