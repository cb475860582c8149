r"""badhelo - refuse HELO/EHLO names listed in config/badhelo

Arguments: `badhelo [reject 0|1] [reject_type perm|temp|disconnect|temp_disconnect]`

  reject       1 (default): refuse HELO/EHLO; 0: only log the match.
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
"""

import re

from qpsmtpd_stdio import DECLINED, DENY, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT, LOGDEBUG, LOGINFO, LOGWARN

MAX_CHECKED = 255  # a domain name is at most 255 octets; longer input never reaches a regex
_REGEX_CHARS = frozenset("{}[]()^$|*+?\\!")
_REJECT_TYPES = {"perm": DENY, "hard": DENY, "temp": DENYSOFT, "soft": DENYSOFT,
                 "disconnect": DENY_DISCONNECT, "temp_disconnect": DENYSOFT_DISCONNECT}


def register(plugin, *args):
    plugin.opts = plugin.options({"reject": "1", "reject_type": "perm"})


def hook_helo(plugin, txn, host):
    conn = plugin.connection
    if conn.relay_client or conn.notes.get("whitelisthost"):
        return DECLINED
    failed = listed(plugin, host.lower())
    if not failed:
        plugin.log(LOGDEBUG, "pass")
        return DECLINED
    message, why = failed
    if plugin.opts["reject"] == "0":
        plugin.log(LOGINFO, f"fail, tolerated: {why}")
        return DECLINED
    plugin.log(LOGINFO, f"fail: {why}")
    return _REJECT_TYPES.get(plugin.opts["reject_type"].lower(), DENY), message


hook_ehlo = hook_helo


def listed(plugin, host):
    """(reply text, log text) if `host` (lower case) is refused by config/badhelo, else None."""
    for bad in plugin.config("badhelo"):
        if not _REGEX_CHARS.intersection(bad):
            if host == bad.lower():
                return f"I do not believe you are {host}.", "in badhelo"
            continue
        if len(host) > MAX_CHECKED:
            plugin.log(LOGWARN, f"name of {len(host)} octets not matched against pattern {bad}")
            continue
        negate = bad.startswith("!")
        try:
            found = re.search(bad[1:] if negate else bad, host, re.IGNORECASE) is not None
        except re.error as exc:
            plugin.log(LOGWARN, f"config badhelo: bad pattern {bad!r} skipped: {exc}")
            continue
        if found != negate:
            return "Your HELO hostname is not allowed", f"badhelo pattern match ({bad})"
    return None
