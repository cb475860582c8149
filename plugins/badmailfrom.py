r"""badmailfrom - refuse envelope senders listed in config/badmailfrom

Arguments: `badmailfrom [reject 0|1|naughty] [reject_type perm|temp|disconnect|temp_disconnect]`

  reject       1 (default): refuse the MAIL command; 0: only log the match;
               naughty: store the refusal in the connection note `naughty`
               (and `naughty_reject_type`) for a later `naughty` plugin, as
               qpsmtpd does. No `naughty` plugin ships yet: until one does,
               `reject naughty` accepts the mail and only logs the match.
  reject_type  perm (default: 550), temp (450), disconnect (550, then hang
               up), temp_disconnect (421, then hang up).

Config files:
  badmailfrom  one entry a line, optionally followed by white space and the
               reply text (default "Your envelope sender is in my badmailfrom
               list"):
                 spammer@example.com     that sender (case-insensitive)
                 @example.com            every sender at that host
                 ^bounce-.*@example\.net$  a regular expression
               As in qpsmtpd, an entry holding any of / ^ $ * + ! % ? \ is a
               regular expression, searched (unanchored: add ^ and $) in
               `user@host`. It is Python `re` syntax, not Perl's: the common
               subset (classes, anchors, groups, quantifiers, \d \w \s, (?i))
               is the same; Perl-only forms such as \z or \Q...\E do not
               compile, and a line that does not compile is logged and skipped.
               Matching ignores case. An entry that is also literally equal
               to the sender matches too, so `a+b@example.com` works as meant.

The null sender <> is never matched. Relay clients, and connections or
senders noted as whitelisted (notes `whitelisthost`, `whitelistsender`), are
not checked, as in qpsmtpd.

Example config/plugins line:

    badmailfrom reject 1
"""

import re

from qpsmtpd_stdio import DECLINED, DENY, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT, LOGDEBUG, LOGINFO, LOGWARN

DEFAULT_REASON = "Your envelope sender is in my badmailfrom list"
MAX_CHECKED = 320  # an address is at most 64 + 1 + 255 octets; longer input never reaches a regex
_REGEX_CHARS = frozenset("/^$*+!%?\\")
_REJECT_TYPES = {"perm": DENY, "hard": DENY, "temp": DENYSOFT, "soft": DENYSOFT,
                 "disconnect": DENY_DISCONNECT, "temp_disconnect": DENYSOFT_DISCONNECT}


def register(plugin, *args):
    plugin.opts = plugin.options({"reject": "1", "reject_type": "perm"})


def hook_mail(plugin, txn, sender, params):
    if is_immune(plugin, txn):
        return DECLINED
    if sender.is_null or not sender.user or not sender.host:
        return DECLINED
    address = f"{sender.user}@{sender.host}".lower()
    for line in plugin.config("badmailfrom"):
        bad, reason = (line.split(None, 1) + [""])[:2]
        if matches(plugin, address, sender.host.lower(), bad):
            return reject(plugin, reason.strip() or DEFAULT_REASON, f"{address} matches {bad}")
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
            plugin.log(LOGWARN, f"config badmailfrom: bad pattern {bad!r} skipped: {exc}")
            return False
    bad = bad.lower()
    if "@" not in bad:
        plugin.log(LOGWARN, f"config badmailfrom: no @ in {bad!r}; skipped")
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
    """qpsmtpd's get_reject: the result for a failed check, by the `reject` and `reject_type` arguments."""
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
    return _REJECT_TYPES.get(plugin.opts["reject_type"].lower(), DENY), message
