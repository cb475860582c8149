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
    """True if ip is covered by an entry: exact, `prefix.`/`prefix:`, or CIDR.

    An IPv6 address is compared in both its short and its full form, so
    `2001:db8::7`, `2001:0db8:0000:0000:0000:0000:0000:0007` and the prefix
    `2001:0db8:` all match the client 2001:db8::7.
    """
    forms = {ip.lower()}
    address = None
    if ":" in ip:
        address = _address(ip)
        if address is not None:
            forms |= {address.compressed, address.exploded}
    for entry in entries:
        entry = entry.split()[0].lower()
        if "/" in entry:
            import ipaddress

            try:
                if (address or _address(ip)) in ipaddress.ip_network(entry, strict=False):
                    return True
            except (ValueError, TypeError):
                continue  # an unparsable line never matches
        elif entry.endswith((".", ":")):
            if any(form.startswith(entry) for form in forms):
                return True
        elif entry in forms or (":" in entry and address is not None and _address(entry) == address):
            return True
    return False


def _address(text):
    import ipaddress  # only for IPv6 and CIDR entries

    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
