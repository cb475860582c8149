"""relay - decide at connect time whether the client may relay

Arguments: none.

Config files:
  relayclients      addresses that may relay, one a line: an IP
                    (`192.0.2.7`, `2001:db8::7`), a prefix ending in `.` or `:`
                    (`192.168.`, `2001:db8:`), or a CIDR block (`10.0.0.0/8`,
                    `2001:db8::/32`)
  morerelayclients  more of the same
  norelayclients    addresses that may NOT relay even if listed above or if
                    RELAYCLIENT is set (same syntax)

RELAYCLIENT in the environment (tcprules sets it, even to "") also makes a
relay client. A relay client's RCPT is accepted for any domain.

Example config/plugins line (before rcpt_ok):

    relay
"""

from qpsmtpd_stdio import DECLINED, LOGINFO, OK


def hook_connect(plugin, txn):
    conn = plugin.connection
    ip = conn.remote_ip
    if not ip:
        return DECLINED
    if matches(ip, plugin.config("norelayclients")):
        if conn.relay_client:
            plugin.log(LOGINFO, f"{ip} is in norelayclients; no relaying")
        conn.relay_client = False
        return DECLINED
    if matches(ip, plugin.config("relayclients") + plugin.config("morerelayclients")):
        conn.relay_client = True
        plugin.log(LOGINFO, f"{ip} is a relay client")
    return DECLINED


def hook_rcpt(plugin, txn, rcpt, params):
    return OK if plugin.connection.relay_client else DECLINED


def matches(ip, entries):
    """True if ip is covered by an entry: exact, `prefix.`/`prefix:`, or CIDR."""
    network = None
    for entry in entries:
        entry = entry.split()[0]
        if "/" in entry:
            import ipaddress

            if network is None:
                network = ipaddress.ip_address(ip)
            try:
                if network in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue  # an unparsable line never matches
        elif entry.endswith((".", ":")):
            if ip.startswith(entry) or ip.lower().startswith(entry.lower()):
                return True
        elif entry.lower() == ip.lower():
            return True
    return False
