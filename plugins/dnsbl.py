"""dnsbl - refuse mail from clients whose IP address is on a DNS blocklist

Arguments: `dnsbl [reject 0|1|naughty] [reject_type perm|temp|disconnect|temp_disconnect] [timeout N]`

  reject       1 (default): refuse every RCPT, except to postmaster, abuse,
               mailer-daemon and root, with the list's reason; 0: only log;
               naughty: store the refusal in the connection note `naughty`
               for the `naughty` plugin.
  reject_type  perm (default: 550), temp (450), disconnect (550, then hang
               up), temp_disconnect (421). A single argument is read as
               reject_type, as qpsmtpd does.
  timeout      seconds each of its DNS queries waits (default: dns_timeout).

The queries (A, and TXT for the reason) go out at connect, for every zone at
once, in the reversed form of RFC 5782 (`4.3.2.1.zone`, or 32 reversed
nibbles for IPv6); the answers are read at the first RCPT, so the greeting
never waits for DNS and postmaster stays reachable. A list that does not
answer (timeout, SERVFAIL) counts as not listing the client, and is logged.
Relay clients and authenticated users are never checked.

Config files:
  dnsbl_zones      one list a line: `zone`, `zone message` or `zone:message`
                   (qpsmtpd's form); `zone=127.0.0.2,127.0.0.4-7` keeps only
                   those answers. In the message %IP% is the client's
                   address. Without a message the list's TXT record is the
                   reason, else "Blocked by ZONE". See qpsmtpd_stdio/dns.py
                   (DNSList) for which answers count, and for dns_servers,
                   dns_timeout and dns_budget.
  dnsbl_allow      addresses never checked: an IP, or a prefix ending in `.`
                   or `:` (`192.168.1.`)
  dnsbl_rejectmsg  lines put before the reason in every refusal

Environment: RBLSMTPD, as rblsmtpd: set and empty, no checks; set to a text,
every RCPT is refused with that text (a leading `-` makes it permanent, 550;
else temporary, 450).

Example config/plugins line (after relay, before rcpt_ok):

    dnsbl reject_type disconnect

Imports at load: qpsmtpd_stdio.dns, qpsmtpd_stdio.dnslist, qpsmtpd_stdio.dnswire.
"""

import os

from qpsmtpd_stdio import DECLINED, DENY, DENYSOFT, LOGINFO, LOGWARN, dns
from qpsmtpd_stdio.dnslist import DNSList
from qpsmtpd_stdio.netlist import NetList

SPECIAL = ("postmaster", "abuse", "mailer-daemon", "root")


def register(plugin, *args):
    plugin.opts = {"reject": "1", "reject_type": "perm"}
    if len(args) == 1:
        plugin.opts["reject_type"] = args[0]
    else:
        plugin.opts = plugin.options(plugin.opts)
    plugin.listings = []
    plugin.verdict = None
    plugin.noted = False


def hook_connect(plugin, txn):
    conn = plugin.connection
    rblsmtpd = os.environ.get("RBLSMTPD")
    if rblsmtpd is not None:
        plugin.log(LOGINFO, f"RBLSMTPD={rblsmtpd!r}: no DNS checks")
        if rblsmtpd:
            hard = rblsmtpd.startswith("-")
            text = dns.printable(rblsmtpd.lstrip("-").replace("%IP%", conn.remote_ip))
            plugin.verdict = (DENY if hard else DENYSOFT, ("5.7.1 " if hard else "4.7.1 ") + text)
        return DECLINED
    if plugin.is_immune(quiet=True) or conn.remote_ip in NetList(plugin.config("dnsbl_allow")):
        return DECLINED
    reverse = dns.reverse_ip(conn.remote_ip)
    zones = plugin.config("dnsbl_zones")
    if reverse and zones:
        resolver = dns.resolver(plugin)
        plugin.listings = [DNSList(line).lookup(resolver, reverse) for line in zones]
    return DECLINED


def hook_rcpt(plugin, txn, rcpt, params):
    if not plugin.listings and plugin.verdict is None:
        return DECLINED
    if plugin.is_immune(quiet=True):
        return DECLINED
    if rcpt.user.lower() in SPECIAL:
        plugin.log(LOGINFO, f"skip, {rcpt.user} is always reachable")
        return DECLINED
    if plugin.verdict is None:
        plugin.verdict = check(plugin)
    if plugin.verdict is False:
        return DECLINED
    code, message = plugin.verdict
    if code in (DENY, DENYSOFT):  # from RBLSMTPD
        return code, message
    if plugin.noted:
        return DECLINED  # reject naughty: the listing is noted once
    plugin.noted = plugin.opts["reject"].lower() == "naughty"
    return plugin.get_reject("\n".join(message))


def hook_disconnect(plugin, txn):
    dns.close(plugin)


def check(plugin):
    """(None, message) for the first list that has the client, else False. Reads the answers."""
    ip = plugin.connection.remote_ip
    for listing in plugin.listings:
        listed = listing.result()
        if listed is None:
            plugin.log(LOGWARN, f"{listing.zone} did not answer ({listing.a.answer().status}); taken as not listed")
        elif listed:
            reason = listing.reason(ip)
            plugin.log(LOGINFO, f"{ip} listed by {listing.zone}: {reason}")
            plugin.connection.notes["dnsbl"] = listing.zone
            lines = [dns.printable(line) for line in plugin.config("dnsbl_rejectmsg")]
            return None, lines + [reason]
    plugin.log(LOGINFO, "pass")
    return False
