"""rhsbl - refuse mail whose sender domain is on a DNS blocklist (right-hand-side list)

Arguments: `rhsbl [reject 0|1|naughty] [reject_type perm|temp|disconnect|temp_disconnect]`

  reject       1 (default): refuse every RCPT of the transaction, except to
               postmaster, abuse, mailer-daemon and root; 0: only log;
               naughty: store the refusal in the connection note `naughty`
               for the `naughty` plugin.
  reject_type  perm (default: 550), temp (450), disconnect (550, then hang
               up), temp_disconnect (421). A single argument `disconnect` is
               read as reject_type, as qpsmtpd does.

The queries (`domain.zone`, A and TXT) go out at MAIL for every zone at
once and are read at the first RCPT, so the MAIL reply never waits for DNS
(qpsmtpd refuses at MAIL). The null sender and address literals are not
checked; nor are relay clients and authenticated users. A list that does not
answer counts as not listing the domain, and is logged.

Config files:
  rhsbl_zones  one list a line: `zone`, `zone message` or `zone:message`,
               with `zone=CODES` as in dnsbl_zones (see plugins/dnsbl.py).
               In the message %IP% is the client's address. Without a message
               the reply is "Mail from DOMAIN rejected because it" and the
               list's TXT record, as qpsmtpd words it.

Example config/plugins line:

    rhsbl

Imports at load: qpsmtpd_stdio.dns, qpsmtpd_stdio.dnslist, qpsmtpd_stdio.dnswire.
"""

from qpsmtpd_stdio import DECLINED, LOGINFO, LOGWARN, dns
from qpsmtpd_stdio.dnslist import DNSList

SPECIAL = ("postmaster", "abuse", "mailer-daemon", "root")


def register(plugin, *args):
    plugin.opts = {"reject": "1", "reject_type": "perm"}
    if len(args) == 1:
        plugin.opts["reject_type"] = "disconnect" if args[0].lower() == "disconnect" else "perm"
    else:
        plugin.opts = plugin.options(plugin.opts)
    how = plugin.opts["reject"].lower()
    plugin.refuse = how not in ("0", "naughty")


def hook_mail(plugin, txn, sender, params):
    host = sender.host.lower().rstrip(".")
    if not host or host.startswith("[") or plugin.is_immune(quiet=True):
        return DECLINED
    zones = plugin.config("rhsbl_zones")
    if zones:
        resolver = dns.resolver(plugin)
        txn.notes["rhsbl"] = [DNSList(line).lookup(resolver, host) for line in zones]
    return DECLINED


def hook_rcpt(plugin, txn, rcpt, params):
    listings = txn.notes.get("rhsbl")
    if not listings or plugin.is_immune(quiet=True):
        return DECLINED
    if rcpt.user.lower() in SPECIAL:
        plugin.log(LOGINFO, f"skip, {rcpt.user} is always reachable")
        return DECLINED
    first = "rhsbl_verdict" not in txn.notes
    if first:
        txn.notes["rhsbl_verdict"] = check(plugin, txn, listings)
    verdict = txn.notes["rhsbl_verdict"]
    if not verdict or not (plugin.refuse or first):  # reject 0 or naughty: logged, or noted, once
        return DECLINED
    return plugin.get_reject(verdict)


def hook_disconnect(plugin, txn):
    dns.close(plugin)


def check(plugin, txn, listings):
    """The refusal text for the first list that has the sender's domain, else None. Reads the answers."""
    host = txn.sender.host.lower().rstrip(".")
    for listing in listings:
        listed = listing.result()
        if listed is None:
            plugin.log(LOGWARN, f"{listing.zone} did not answer ({listing.a.answer().status}); taken as not listed")
        elif listed:
            if listing.list.message:
                reason = listing.reason(plugin.connection.remote_ip)
            else:
                texts = listing.txt.answer().records
                reason = dns.printable(f"Mail from {host} rejected because it " + ("; ".join(texts) or
                                                                                   f"is listed by {listing.zone}"))
            plugin.log(LOGINFO, f"{host} listed by {listing.zone}: {reason}")
            return reason
    plugin.log(LOGINFO, "pass")
    return None
