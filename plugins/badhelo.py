r"""badhelo - refuse HELO/EHLO names listed in config/badhelo

Arguments: `badhelo [reject 0|1|naughty] [reject_type perm|temp|disconnect|temp_disconnect]`

  reject       1 (default): refuse HELO/EHLO; 0: only log the match;
               naughty: store the refusal in the connection note `naughty`
               for the `naughty` plugin.
  reject_type  perm (default: 550 and the session goes on, as qpsmtpd's old
               check_spamhelo), temp (450), disconnect (550, then hang up),
               temp_disconnect (421, then hang up).

Config files:
  badhelo  one name or pattern a line, the same file and syntax as the helo
           plugin's: a line holding any of {}[]()^$|*+?\! is a regular
           expression (Python `re` syntax), searched case-insensitively in
           the name, and a leading ! negates it; other lines are names,
           compared case-insensitively. A pattern that does not compile is
           logged and skipped.

This is qpsmtpd's older check_spamhelo: only the badhelo list, none of the
helo plugin's other checks. Use one or the other, not both. Relay clients are
not checked. Replies: "I do not believe you are NAME." for a listed name,
"Your HELO hostname is not allowed" for a pattern.

Example config/plugins line:

    badhelo

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, LOGDEBUG
from qpsmtpd_stdio.patterns import helo_listed


def register(plugin, *args):
    plugin.opts = plugin.options({"reject": "1", "reject_type": "perm"})


def hook_helo(plugin, txn, host):
    if plugin.is_immune(quiet=True):
        return DECLINED
    failed = helo_listed(plugin.config("badhelo"), host, plugin.log)
    if not failed:
        plugin.log(LOGDEBUG, "pass")
        return DECLINED
    return plugin.get_reject(*failed)


hook_ehlo = hook_helo
