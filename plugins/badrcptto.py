r"""badrcptto - refuse recipients listed in config/badrcptto

Arguments: `badrcptto [reject 0|1|naughty] [reject_type perm|temp|disconnect|temp_disconnect]`

  reject       1 (default): refuse the RCPT command; 0: only log the match;
               naughty: store the refusal in the connection note `naughty`
               for a later `naughty` plugin (none ships yet: until one does,
               the recipient is accepted and the match only logged).
  reject_type  perm (default: 550 5.1.1), temp (450 4.1.1), disconnect (550,
               then hang up), temp_disconnect (421, then hang up).
               qpsmtpd's badrcptto takes no arguments and always answers 550.

Config files:
  badrcptto  same syntax as badmailfrom: one entry a line, optionally
             followed by white space and the reply text:
               nobody@example.com     that recipient (case-insensitive)
               @example.com           every recipient at that host
               ^[^@]*%                a regular expression (percent hack)
             An entry holding any of / ^ $ * + ! % ? \ is a regular
             expression in Python `re` syntax (qpsmtpd: Perl), searched
             case-insensitively and unanchored in `user@host`; a line that
             does not compile is logged and skipped.
             The default reply is "mail to USER@HOST not accepted here" (the
             recipient; qpsmtpd names the matching entry, which would show a
             pattern to the client). A reason given on the line is the reply
             text (qpsmtpd 0.94 ignores it).

Relay clients and whitelisted connections are not checked, as in qpsmtpd.
List it before rcpt_ok, which accepts and ends the rcpt hook.

Example config/plugins line:

    badrcptto
"""

import re

from qpsmtpd_stdio import DECLINED, DENY, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT, LOGDEBUG, LOGINFO, LOGWARN

MAX_CHECKED = 320  # an address is at most 64 + 1 + 255 octets; longer input never reaches a regex
_REGEX_CHARS = frozenset("/^$*+!%?\\")
_REJECT_TYPES = {"perm": DENY, "hard": DENY, "temp": DENYSOFT, "soft": DENYSOFT,
                 "disconnect": DENY_DISCONNECT, "temp_disconnect": DENYSOFT_DISCONNECT}


def register(plugin, *args):
    plugin.opts = plugin.options({"reject": "1", "reject_type": "perm"})


def hook_rcpt(plugin, txn, rcpt, params):
    if is_immune(plugin, txn) or not rcpt.user or not rcpt.host:
        return DECLINED
    address = f"{rcpt.user}@{rcpt.host}".lower()
    for line in plugin.config("badrcptto"):
        bad, reason = (line.split(None, 1) + [""])[:2]
        if matches(plugin, address, rcpt.host.lower(), bad):
            text = reason.strip() or f"mail to {rcpt.address} not accepted here"
            return reject(plugin, text, f"{address} matches {bad}")
    plugin.log(LOGDEBUG, "pass")
    return DECLINED


def matches(plugin, address, host, bad):
    """True if `address` (lower-case user@host) is covered by the entry `bad`."""
    if _REGEX_CHARS.intersection(bad):
        if bad.lower() == address:
            return True
        if len(address) > MAX_CHECKED:
            plugin.log(LOGWARN, f"address of {len(address)} octets not matched against pattern {bad}")
            return False
        try:
            return re.search(bad, address, re.IGNORECASE) is not None
        except re.error as exc:
            plugin.log(LOGWARN, f"config badrcptto: bad pattern {bad!r} skipped: {exc}")
            return False
    bad = bad.lower()
    if "@" not in bad:
        plugin.log(LOGWARN, f"config badrcptto: no @ in {bad!r}; skipped")
        return False
    if bad.startswith("@"):
        return bad[1:] == host
    return bad == address


def is_immune(plugin, txn):
    conn = plugin.connection
    if conn.relay_client:
        plugin.log(LOGINFO, "skip, relay client")
        return True
    if conn.notes.get("whitelisthost") or txn.notes.get("whitelistsender"):
        plugin.log(LOGINFO, "skip, whitelisted")
        return True
    return False


def reject(plugin, message, why):
    """qpsmtpd's get_reject, with the enhanced status code X.1.1 (bad destination mailbox)."""
    how = plugin.opts["reject"].lower()
    if how == "0":
        plugin.log(LOGINFO, f"fail, tolerated: {why}")
        return DECLINED
    if how == "naughty":
        notes = plugin.connection.notes
        notes["naughty"] = f"{notes['naughty']}\r\n{message}" if notes.get("naughty") else message
        notes.setdefault("naughty_reject_type", plugin.opts["reject_type"])
        plugin.log(LOGINFO, f"fail, NAUGHTY: {why}")
        return DECLINED
    plugin.log(LOGINFO, f"fail: {why}")
    code = _REJECT_TYPES.get(plugin.opts["reject_type"].lower(), DENY)
    return code, f"{'5' if code in (DENY, DENY_DISCONNECT) else '4'}.1.1 {message}"
