r"""badrcptto - refuse recipients listed in config/badrcptto

Arguments: `badrcptto [reject 0|1|naughty] [reject_type perm|temp|disconnect|temp_disconnect]`

  reject       1 (default): refuse the RCPT command; 0: only log the match;
               naughty: store the refusal in the connection note `naughty`
               for the `naughty` plugin.
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

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, LOGDEBUG
from qpsmtpd_stdio.patterns import address_matches


def register(plugin, *args):
    plugin.opts = plugin.options({"reject": "1", "reject_type": "perm"})


def hook_rcpt(plugin, txn, rcpt, params):
    if plugin.is_immune(txn) or not rcpt.user or not rcpt.host:
        return DECLINED
    address = f"{rcpt.user}@{rcpt.host}".lower()
    for line in plugin.config("badrcptto"):
        bad, reason = (line.split(None, 1) + [""])[:2]
        if address_matches(bad, address, rcpt.host.lower(), plugin.log, "badrcptto"):
            text = reason.strip() or f"mail to {rcpt.address} not accepted here"
            return plugin.get_reject(text, f"{address} matches {bad}", enhanced="1.1")  # bad destination mailbox
    plugin.log(LOGDEBUG, "pass")
    return DECLINED
