r"""badmailfrom - refuse envelope senders listed in config/badmailfrom

Arguments: `badmailfrom [reject 0|1|naughty] [reject_type perm|temp|disconnect|temp_disconnect]`

  reject       1 (default): refuse the MAIL command; 0: only log the match;
               naughty: store the refusal in the connection note `naughty`
               (and `naughty_reject_type`) for a later `naughty` plugin, as
               qpsmtpd does. List the `naughty` plugin to act on it.
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

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, LOGDEBUG
from qpsmtpd_stdio.patterns import address_matches

DEFAULT_REASON = "Your envelope sender is in my badmailfrom list"


def register(plugin, *args):
    plugin.opts = plugin.options({"reject": "1", "reject_type": "perm"})


def hook_mail(plugin, txn, sender, params):
    if plugin.is_immune(txn):
        return DECLINED
    if sender.is_null or not sender.user or not sender.host:
        return DECLINED
    address = f"{sender.user}@{sender.host}".lower()
    for line in plugin.config("badmailfrom"):
        bad, reason = (line.split(None, 1) + [""])[:2]
        if matches(plugin, address, sender.host.lower(), bad):
            return plugin.get_reject(reason.strip() or DEFAULT_REASON, f"{address} matches {bad}")
    plugin.log(LOGDEBUG, "pass")
    return DECLINED


def matches(plugin, address, host, bad):
    """True if `address` (lower-case user@host) is covered by the entry `bad`."""
    return address_matches(bad, address, host, plugin.log, "badmailfrom")
