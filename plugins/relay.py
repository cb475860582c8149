"""relay - decide at connect time whether the client may relay

Arguments: `relay [only 1]`

  only 1   relay only: a client that may not relay (and has not
           authenticated) gets 550 to every RCPT, local domains included.
           For a smart host or submission server that is no MX. List it
           before the rcpt_* plugins.

Config files:
  relayclients      addresses that may relay, one a line: an IP
                    (`192.0.2.7`, `2001:db8::7`), a prefix ending in `.` or `:`
                    (`192.168.`, `2001:db8:`), or a CIDR block (`10.0.0.0/8`,
                    `2001:db8::/32`)
  morerelayclients  more of the same
  norelayclients    addresses that may NOT relay even if listed above or if
                    RELAYCLIENT is set (same syntax)

An IPv6 address matches in its short and its full form, and an IPv4-mapped
client (`::ffff:10.0.0.1`) is its IPv4 address.

RELAYCLIENT in the environment (tcprules sets it, even to "") also makes a
relay client. A relay client's RCPT is accepted for any domain.

Example config/plugins line (before rcpt_ok):

    relay

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, DENY, LOGINFO, OK
from qpsmtpd_stdio.netlist import NetList


def register(plugin, *args):
    plugin.only = plugin.options().get("only", "0") not in ("0", "")


def hook_connect(plugin, txn):
    conn = plugin.connection
    ip = conn.remote_ip
    if not ip:
        return DECLINED
    if ip in NetList(plugin.config("norelayclients")):
        if conn.relay_client:
            plugin.log(LOGINFO, f"{ip} is in norelayclients; no relaying")
        conn.relay_client = False
        return DECLINED
    if ip in NetList(plugin.config("relayclients") + plugin.config("morerelayclients")):
        conn.relay_client = True
        plugin.log(LOGINFO, f"{ip} is a relay client")
    return DECLINED


def hook_rcpt(plugin, txn, rcpt, params):
    if plugin.connection.relay_client:
        return OK
    if plugin.only:
        plugin.log(LOGINFO, "fail, not a relay client (relay only)")
        return DENY, "5.7.1 Relaying denied: this server takes mail only from its own users"
    return DECLINED
