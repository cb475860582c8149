"""rcpt_regexp - answer recipients from a list of addresses and regular expressions

Arguments: none.

Config files:
  rcpt_regexp  `ADDRESS-OR-/REGEX/ CODE [reply text]` lines, tried in order;
               the first that matches gives its CODE (OK, DENY, DENYSOFT,
               DECLINED, DENY_DISCONNECT, DENYSOFT_DISCONNECT) and text. A
               /.../ entry is a Python regular expression, searched without
               regard to case (qpsmtpd: Perl); anything else is an address,
               compared without regard to case. A bad line is logged and skipped.

An OK never makes a relay: for a domain this server does not take mail for
(me, rcpthosts, morercpthosts), and a client that may not relay, it is
logged and passed over, so that rcpt_ok refuses it. As in qpsmtpd's own
example, a catch-all `/^.*$/ DENY No such user.` line at the end refuses
every address not listed before it.

Example config/plugins line (before rcpt_ok):

    rcpt_regexp

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, LOGWARN, OK
from qpsmtpd_stdio.constants import RETURN_CODE_NAMES
from qpsmtpd_stdio.localdomains import is_local

CODES = {name: code for code, name in RETURN_CODE_NAMES.items()}
MAX_ADDRESS = 320


def hook_rcpt(plugin, txn, rcpt, params):
    if not rcpt.host or not rcpt.user:
        return DECLINED
    address = f"{rcpt.user}@{rcpt.host}".lower()[:MAX_ADDRESS]
    for number, line in enumerate(plugin.config("rcpt_regexp"), 1):
        entry, _, rest = line.strip().partition(" ")
        name, _, text = rest.strip().partition(" ")
        code = CODES.get(name.upper())
        if code is None:
            plugin.log(LOGWARN, f"rcpt_regexp line {number}: {name!r} is not a return code; skipped")
            continue
        if not matches(plugin, entry, address, number):
            continue
        if code == OK and not plugin.connection.relay_client and not is_local(plugin, rcpt.host):
            plugin.log(LOGWARN, f"rcpt_regexp line {number} says OK for {address}, but we do not take mail for "
                                f"{rcpt.host}: no relaying")
            return DECLINED
        return (code, text.strip()) if text.strip() else code
    return DECLINED


def matches(plugin, entry, address, number):
    if not (len(entry) > 1 and entry[0] == "/" and entry[-1] == "/"):
        return entry.lower() == address
    import re  # only for a config that has patterns: it costs milliseconds to import

    try:
        return re.search(entry[1:-1], address, re.IGNORECASE) is not None
    except re.error as exc:
        plugin.log(LOGWARN, f"rcpt_regexp line {number}: bad pattern {entry}: {exc}; skipped")
        return False
