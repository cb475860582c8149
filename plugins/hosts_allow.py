"""hosts_allow - decide before the greeting whether a client may connect

Arguments: none (qpsmtpd's takes none either).

Config file `hosts_allow`: lines of an address or network, a return code,
and a message, the first matching line deciding (qpsmtpd's format):

    192.168.3.4     DECLINED
    192.168.3.0/24  DENY Sorry, known spam only source
    2001:db8::/32   DENYSOFT_DISCONNECT Try again later

The address is matched by the one matcher of every address list
(netlist.py: IPv4 and IPv6, CIDR, `10.` prefixes). The code is one of OK,
DECLINED, DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT; DENY gives
554 and DENYSOFT 421, with the message, and the connection ends. An
unknown code counts as DECLINED, as in qpsmtpd, and is logged. OK skips
the connect checks listed after this plugin.

Sessions from one address: under qpsmtpd-forkserver and qpsmtpd-prefork the
parent counts each client's running sessions and refuses past `-m` /
`--max-from-ip` itself. It tells the session the count and the limit
(QPSMTPD_CONNECTIONS_FROM_IP, QPSMTPD_MAX_FROM_IP), and this plugin applies
qpsmtpd's karma adjustment to the limit: a client whose karma history
(the connection note `karma_history`, set by the karma plugin listed
before this one) is 0 or less may hold only one session, one above 5 gets
3 more than the limit (never more than the parent allows). Over the
limit: 421 `too many connections from ADDR, try again later`. Under a
superserver there is no count, and only the file applies: use xinetd's
`per_source` or systemd's `MaxConnectionsPerSource` for the limit.

Example config/plugins line (after karma, if karma is used):

    hosts_allow

Imports at load: none beyond the core.
"""

import os

from qpsmtpd_stdio import (DECLINED, DENY, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT, LOGDEBUG, LOGINFO, LOGWARN,
                           OK)
from qpsmtpd_stdio.digits import number
from qpsmtpd_stdio.netlist import NetList

CODES = {"OK": OK, "DECLINED": DECLINED, "DENY": DENY, "DENYSOFT": DENYSOFT, "DENY_DISCONNECT": DENY_DISCONNECT,
         "DENYHARD": DENY_DISCONNECT, "DENYSOFT_DISCONNECT": DENYSOFT_DISCONNECT}


def hook_connect(plugin, txn):
    ip = plugin.connection.remote_ip
    if not ip:
        return DECLINED
    limited = over_limit(plugin, ip)
    if limited:
        return limited
    for line in plugin.config("hosts_allow"):
        words = line.split(None, 2)
        if len(words) < 2 or ip not in NetList(words[:1]):
            continue
        code = CODES.get(words[1].upper())
        if code is None:
            plugin.log(LOGWARN, f"hosts_allow: unknown return code {words[1]!r} in {line!r}; taken as DECLINED")
            code = DECLINED
        message = words[2] if len(words) > 2 else ""
        if code in (DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT):
            plugin.log(LOGINFO, f"fail, {ip} matches {words[0]}: {message}")
            return (code, message) if message else code
        plugin.log(LOGDEBUG, f"pass, {ip} matches {words[0]}: {words[1]}")
        return code
    return DECLINED


def over_limit(plugin, ip):
    count = number(os.environ.get("QPSMTPD_CONNECTIONS_FROM_IP"))
    limit = number(os.environ.get("QPSMTPD_MAX_FROM_IP"))
    if not count or not limit:
        return None
    karma = plugin.connection.notes.get("karma_history")
    if isinstance(karma, int):
        limit = 1 if karma <= 0 else limit + 3 if karma > 5 else limit
    if count <= limit:
        return None
    plugin.log(LOGINFO, f"fail: too many connections from {ip} ({count} > {limit})")
    return DENYSOFT_DISCONNECT, f"too many connections from {ip}, try again later"
