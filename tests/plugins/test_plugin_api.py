"""The plugin API helpers: Plugin.get_reject and Plugin.is_immune (pluginhost.py), and qpsmtpd_stdio.patterns."""

import subprocess
import sys
from types import SimpleNamespace

import pytest
from conftest import REPO

from qpsmtpd_stdio import DECLINED, DENY, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT, LOGINFO, LOGWARN
from qpsmtpd_stdio.constants import REJECT_TYPES
from qpsmtpd_stdio.patterns import address_matches, helo_listed
from qpsmtpd_stdio.plugin import Plugin
from qpsmtpd_stdio.connection import Connection
from qpsmtpd_stdio.transaction import Transaction


class Host:
    """What a Plugin needs of its PluginHost: the connection and the log."""

    def __init__(self):
        self.connection = Connection()
        self.logged = []

    def log(self, level, message, name):
        self.logged.append((level, message))


def make(*args, opts=None):
    plugin = Plugin("test", list(args), "/dev/null", Host())
    if opts is not None:
        plugin.opts = opts
    return plugin


def messages(plugin):
    return [message for _, message in plugin._host.logged]


# get_reject -------------------------------------------------------------
def test_reject_by_default_with_the_reject_type_code():
    plugin = make()
    assert plugin.get_reject("go away", "listed") == (DENY, "go away")
    assert plugin._host.logged == [(LOGINFO, "fail: listed")]


@pytest.mark.parametrize("reject_type, code", sorted(REJECT_TYPES.items()) + [("TEMP", DENYSOFT)])
def test_reject_type_gives_the_code(reject_type, code):
    assert make("reject_type", reject_type).get_reject("x") == (code, "x")


def test_default_type_stands_for_a_missing_or_unknown_reject_type():
    assert make().get_reject("x", default_type="disconnect") == (DENY_DISCONNECT, "x")
    assert make("reject_type", "bogus").get_reject("x", default_type="temp") == (DENYSOFT, "x")
    assert make("reject_type", "bogus").get_reject("x") == (DENY, "x")


def test_a_refusal_without_why_is_not_logged():
    plugin = make()
    assert plugin.get_reject(["line 1", "line 2"]) == (DENY, ["line 1", "line 2"])
    assert plugin._host.logged == []


@pytest.mark.parametrize("why, line", [("listed", "fail, tolerated: listed"), ("", "fail, tolerated")])
def test_reject_0_logs_and_declines(why, line):
    plugin = make("reject", "0")
    assert plugin.get_reject("go away", why) == DECLINED
    assert plugin._host.logged == [(LOGINFO, line)]
    assert plugin.connection.notes == {}


def test_reject_naughty_appends_to_the_note_and_declines():
    plugin = make("reject", "Naughty", "reject_type", "temp")
    notes = plugin.connection.notes
    assert plugin.get_reject("first", "one", enhanced="1.1") == DECLINED
    assert notes == {"naughty": "first", "naughty_reject_type": "temp"}  # no enhanced code in the note
    plugin.opts = {"reject": "naughty", "reject_type": "perm"}
    assert plugin.get_reject(["second", "third"]) == DECLINED
    assert notes == {"naughty": "first\r\nsecond\r\nthird", "naughty_reject_type": "temp"}  # the first type stays
    assert messages(plugin) == ["fail, NAUGHTY: one", "fail, NAUGHTY"]


def test_naughty_reject_type_only_when_given():
    # As qpsmtpd: without a reject_type of its own, the naughty plugin's reject_type applies.
    plugin = make(opts={"reject": "naughty"})
    plugin.get_reject("x", default_type="disconnect")
    assert "naughty_reject_type" not in plugin.connection.notes
    plugin = make(opts={"reject": "naughty", "reject_type": "temp"})
    plugin.get_reject("x", default_type="disconnect")
    assert plugin.connection.notes["naughty_reject_type"] == "temp"


@pytest.mark.parametrize("reject_type, text", [("perm", "5.1.1 x"), ("disconnect", "5.1.1 x"), ("temp", "4.1.1 x"),
                                               ("temp_disconnect", "4.1.1 x")])
def test_enhanced_code_class_follows_the_code(reject_type, text):
    code, message = make("reject_type", reject_type).get_reject("x", enhanced="1.1")
    assert message == text and code == REJECT_TYPES[reject_type]


def test_enhanced_code_on_every_line():
    assert make().get_reject(["a", "b"], enhanced="7.25") == (DENY, ["5.7.25 a", "5.7.25 b"])


def test_opts_set_in_register_win_over_the_arguments():
    plugin = make("reject", "0", opts={"reject": "1", "reject_type": "temp_disconnect"})
    assert plugin.get_reject("x") == (DENYSOFT_DISCONNECT, "x")
    assert make("reject", "0").get_reject("x") == DECLINED  # no opts: plugin.options()
    assert make(opts={}).get_reject("x") == (DENY, "x")  # reject defaults to 1


# is_immune --------------------------------------------------------------
def test_not_immune():
    plugin = make()
    assert plugin.is_immune(Transaction()) is False and plugin._host.logged == []


@pytest.mark.parametrize("setup, line", [
    (lambda conn, txn: setattr(conn, "relay_client", True), "skip, relay client"),
    (lambda conn, txn: setattr(conn, "auth_user", "alice"), "skip, relay client"),
    (lambda conn, txn: conn.notes.update(whitelisthost=1), "skip, whitelisted"),
    (lambda conn, txn: txn.notes.update(whitelistsender=1), "skip, whitelisted"),
])
def test_immune(setup, line):
    plugin, txn = make(), Transaction()
    setup(plugin.connection, txn)
    assert plugin.is_immune(txn) is True
    assert plugin._host.logged == [(LOGINFO, line)]
    plugin._host.logged.clear()
    assert plugin.is_immune(txn, quiet=True) is True and plugin._host.logged == []


def test_whitelistsender_needs_the_transaction():
    plugin, txn = make(), Transaction()
    txn.notes["whitelistsender"] = 1
    assert plugin.is_immune() is False and plugin.is_immune(txn) is True


# patterns ---------------------------------------------------------------
def logger():
    logged = []
    return logged, lambda level, message: logged.append((level, message))


@pytest.mark.parametrize("entry, address, expected", [
    ("bad@example.org", "bad@example.org", True),
    ("BAD@Example.ORG", "bad@example.org", True),
    ("bad@example.org", "good@example.org", False),
    ("@example.org", "anyone@example.org", True),
    ("@example.org", "anyone@sub.example.org", False),
    (r"^bounce-.*@example\.net$", "bounce-123@example.net", True),
    (r"^bounce-.*@example\.net$", "xbounce-123@example.net", False),
    ("^BOUNCE-", "bounce-1@example.net", True),  # case-insensitive
    ("a+b@example.com", "a+b@example.com", True),  # a pattern that is also the address, literally
    ("%", "a%b@example.com", True),
])
def test_address_matches(entry, address, expected):
    logged, log = logger()
    assert address_matches(entry, address, address.partition("@")[2], log, "badmailfrom") is expected
    assert logged == []


def test_address_entries_that_cannot_match_are_logged():
    logged, log = logger()
    assert address_matches("example.org", "a@example.org", "example.org", log, "badrcptto") is False
    assert address_matches("^(a", "a@example.org", "example.org", log, "badrcptto") is False
    assert logged[0] == (LOGWARN, "config badrcptto: no @ in 'example.org'; skipped")
    assert logged[1][1].startswith("config badrcptto: bad pattern '^(a' skipped: ")


def test_overlong_address_never_reaches_a_regex():
    logged, log = logger()
    address = "a" * 400 + "@x.example"
    assert address_matches("^a", address, "x.example", log, "badmailfrom") is False
    assert logged == [(LOGWARN, f"address of {len(address)} octets not matched against pattern ^a")]
    assert address_matches(address, address, "x.example", log, "badmailfrom") is True  # a literal entry still does


def test_helo_listed():
    logged, log = logger()
    entries = ["Bad.Example", r"^dyn-\d+\.", "!\\.", "(unclosed"]
    assert helo_listed(entries, "BAD.example", log) == ("I do not believe you are bad.example.", "in badhelo")
    assert helo_listed(entries, "dyn-12.isp.example", log) == ("Your HELO hostname is not allowed",
                                                               r"badhelo pattern match (^dyn-\d+\.)")
    assert helo_listed(entries, "nodot", log) == ("Your HELO hostname is not allowed", "badhelo pattern match (!\\.)")
    assert helo_listed(entries, "mail.example", log) is None
    assert helo_listed([], "anything", log) is None
    assert len(logged) == 1 and logged[0][1].startswith("config badhelo: bad pattern '(unclosed' skipped: ")


def test_overlong_helo_name_never_reaches_a_regex():
    logged, log = logger()
    name = "a" * 300
    assert helo_listed(["^a", name], name, log) == (f"I do not believe you are {name}.", "in badhelo")
    assert logged == [(LOGWARN, "name of 300 octets not matched against pattern ^a")]


def test_re_is_imported_only_for_a_pattern():
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
            "from qpsmtpd_stdio.patterns import address_matches, helo_listed\n"
            "log = lambda level, message: None\n"
            "address_matches('a@b.example', 'a@b.example', 'b.example', log, 'badmailfrom')\n"
            "address_matches('@b.example', 'a@b.example', 'b.example', log, 'badmailfrom')\n"
            "helo_listed(['bad.example'], 'good.example', log)\n"
            "print('re' in sys.modules)\n"
            "helo_listed(['^bad'], 'good.example', log)\n"
            "print('re' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


# The loglevel argument every plugin takes (qpsmtpd's adjust_log_level) ----------------
@pytest.mark.parametrize("args, logged_at", [
    ((), [6, 4, 0]),
    (("loglevel", "2"), [2, 2, 2]),          # every line at that level
    (("reject", "0", "loglevel", "+2"), [7, 6, 2]),  # moved, and kept within 0-7
    (("loglevel", "-5"), [1, 0, 0]),
    (("loglevel", "9"), [6, 4, 0]),          # not a level: ignored, as qpsmtpd does after one error
    (("loglevel", "LOGINFO"), [6, 4, 0]),
    (("loglevel",), [6, 4, 0]),
])
def test_loglevel_argument_moves_the_plugins_lines(args, logged_at):
    plugin = make(*args)
    for level in (LOGINFO, LOGWARN, 0):
        plugin.log(level, "x")
    assert [level for level, _ in plugin._host.logged] == logged_at


def test_loglevel_argument_in_a_real_session(tmp_path):
    from qpsmtpd_stdio.testing import Harness

    h = Harness(tmp_path, plugins=["relay loglevel 1", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    h.config("relayclients", "192.0.2.10")
    r = h.run("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<b@elsewhere.example>", "QUIT")
    assert r.codes == [220, 250, 250, 250, 221]
    # The plugin's own line (LOGINFO in relay.py) moves; the host's lines about the plugin do not, as in qpsmtpd.
    assert (1, "connect", "relay", "192.0.2.10 is a relay client") in r.records


# What qpsmtpd's plugins had and ports need ------------------------------------------------------------
def test_recipients_added_and_removed_by_a_plugin(tmp_path):
    from qpsmtpd_stdio.testing import Harness

    h = Harness(tmp_path, plugins=["reroute", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    h.plugin("reroute", "def hook_data_post(plugin, txn):\n"
                        "    txn.add_recipient('carol@example.test')\n"
                        "    txn.add_recipient('carol@example.test')\n"  # never twice
                        "    txn.remove_recipient('bob@example.test')\n")  # the host's case does not matter
    r = h.run("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@EXAMPLE.test>", "RCPT TO:<dan@example.test>",
              "DATA", "QUIT", body="Subject: s\n\nx")
    assert r.codes[-2] == 250
    assert r.queued[0].recipients == ["dan@example.test", "carol@example.test"]


def test_deferred_rejects_naughty_and_karma():
    plugin = make()
    assert not plugin.is_naughty()
    assert plugin.store_deferred_reject("first") == DECLINED
    plugin.store_deferred_reject(["second", "third"], "temp")
    plugin.store_deferred_reject("fourth", "perm")
    notes = plugin.connection.notes
    assert notes["naughty"] == "first\r\nsecond\r\nthird\r\nfourth" and notes["naughty_reject_type"] == "temp"
    assert plugin.is_naughty(quiet=True) and messages(plugin) == []
    assert plugin.is_naughty() and messages(plugin) == ["skip, naughty"]
    plugin.adjust_karma(2)
    plugin.adjust_karma(-5)
    assert notes["karma"] == -3


@pytest.mark.parametrize("text, value, logged", [(None, 4, []), ("12", 12, []), ("0", 4, ["invalid limit '0'; using 4"]),
                                                ("x1", 4, ["invalid limit 'x1'; using 4"]),
                                                ("\u0664", 4, ["invalid limit '\u0664'; using 4"])])
def test_whole_number_argument(text, value, logged):
    plugin = make()
    assert plugin.whole_number(text, 4, "limit") == value and messages(plugin) == logged


def test_too_big_for_a_filter():
    plugin = make()
    txn = SimpleNamespace(data_size=2048)
    assert not plugin.too_big(txn, 2) and messages(plugin) == []  # exactly max_size: scanned
    assert plugin.too_big(txn, 1.5) and messages(plugin) == ["skip, too large (2048)"]


def test_data_headers_end_sees_the_header_before_received_and_data_post(tmp_path):
    from qpsmtpd_stdio.testing import Harness

    h = Harness(tmp_path, plugins=["by_header", "after", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    h.plugin("by_header", "from qpsmtpd_stdio import DENY, DECLINED\n"
                          "def hook_data_headers_end(plugin, txn):\n"
                          "    plugin.connection.notes['seen'] = txn.header.names()\n"
                          "    return (DENY, 'no thanks') if txn.header.get('X-Spam') else DECLINED\n")
    h.plugin("after", "def hook_data_post(plugin, txn):\n    plugin.connection.notes['data_post'] = True\n")
    r = h.run("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", "DATA", "QUIT",
              body="X-Spam: yes\nSubject: s\n\nbody")
    assert r.codes[-2] == 554 and r.replies[-2].text == "5.7.1 no thanks"
    assert r.connection.notes["seen"] == ["X-Spam", "Subject"]  # no Received yet
    assert "data_post" not in r.connection.notes and not r.queued
    r = h.run("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", "DATA", "QUIT",
              body="Subject: s\n\nbody")
    assert r.codes[-2] == 250 and r.connection.notes["data_post"]


def test_body_write_appends_to_the_body(tmp_path):
    from qpsmtpd_stdio.testing import Harness

    h = Harness(tmp_path, plugins=["footer", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    h.plugin("footer", "def hook_data_post(plugin, txn):\n"
                       "    txn.body_write('--\\nscanned by us\\n.\\n')\n"
                       "    try:\n"
                       "        txn.body_write(b'bad\\0')\n"
                       "    except ValueError:\n"
                       "        plugin.connection.notes['refused'] = True\n")
    r = h.run("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", "DATA", "QUIT",
              body="Subject: s\n\nbody")
    assert r.codes[-2] == 250 and r.connection.notes["refused"]
    assert r.queued[0].body.endswith(b"body\r\n--\r\nscanned by us\r\n.\r\n")


# qpsmtpd's *_parse hooks: a plugin parses a command's argument itself ---------------------------------
PARSERS = '''from qpsmtpd_stdio import DENY, OK


def spaced(command, arg):
    """MAIL FROM: user at example.org, as some old client wrote it."""
    words = arg.split()
    if len(words) == 4 and words[0].upper() in ("FROM:", "TO:") and words[2] == "at":
        return OK, f"<{words[1]}@{words[3]}>"
    if "explode" in arg:
        raise RuntimeError("a bug in the parser")
    if "refuse" in arg:
        return DENY, "this parser does not like it"
    return OK, arg.split(":", 1)[1].strip().split()[0], *arg.split()[2:]


def hook_mail_parse(plugin, txn, arg):
    return OK, spaced


def hook_rcpt_parse(plugin, txn, arg):
    return OK, spaced


def hook_ehlo_parse(plugin, txn, arg):
    return OK, lambda command, arg: (OK, arg.strip().lower().replace("_", "-"))
'''


def test_parse_hooks(tmp_path):
    from qpsmtpd_stdio.testing import Harness

    h = Harness(tmp_path, plugins=["parsers", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    h.plugin("parsers", PARSERS)
    r = h.run("EHLO Old_Client.Example", "MAIL FROM: alice at example.org", "RCPT TO: bob at example.test",
              "RCPT TO:<carol@example.test> NOTIFY=NEVER", "DATA", "QUIT", body="Subject: s\n\nx")
    assert r.codes == [220, 250, 250, 250, 250, 354, 250, 221], r.output
    assert r.connection.hello_host == "old-client.example"
    assert r.queued[0].sender == "alice@example.org"
    assert r.queued[0].recipients == ["bob@example.test", "carol@example.test"]
    r = h.run("EHLO c", "MAIL FROM: refuse me", "MAIL FROM: explode", "QUIT")
    assert r.codes == [220, 250, 501, 451, 221]
    assert r.replies[2].text == "5.5.2 this parser does not like it"
    assert "mail_parse parser failed" in r.log_text and "a bug in the parser" in r.log_text
