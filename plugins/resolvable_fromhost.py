"""resolvable_fromhost - refuse a sender domain that cannot receive mail (no MX, no address)

Arguments: `resolvable_fromhost [reject 0|1|naughty] [reject_type temp|perm|disconnect|temp_disconnect]`

  reject       1 (default): refuse MAIL; 0: only log; naughty: store the
               refusal in the connection note `naughty` for a later
               `naughty` plugin.
  reject_type  temp (default, as qpsmtpd: 450 4.1.8), perm (550 5.1.8),
               disconnect, temp_disconnect. It applies to a domain that does
               not resolve; see below for the other two outcomes.

At MAIL the sender domain's MX, A and AAAA queries go out together, then:

  mx      an MX host has an address (the MX hosts' A/AAAA, up to 10 hosts,
          are asked together): pass
  a       no MX record, but the domain has an address (RFC 5321 5.1): pass
  null MX the domain publishes a null MX (RFC 7505: `0 .`), so it never
          receives mail and no bounce could be delivered: refused with
          `550 5.7.27 Sender address has null MX`
  fail    NXDOMAIN, no MX and no address, or no MX host with a usable
          address: refused with reject_type
  DNS failure (SERVFAIL, timeout, the DNS budget spent): always temporary,
          `450 4.4.3`, never 5xx; the client tries again later

An address literal (`user@[192.0.2.1]`) and the null sender pass; relay
clients and authenticated users are not checked. The result is kept in the
transaction notes `resolvable_fromhost` (mx, a, ip, null, whitelist, or why
it failed) and `resolvable_fromhost_host`.

Config files:
  invalid_resolvable_fromhost  networks whose addresses do not count (CIDR,
               IPv4 or IPv6, one a line). Without it: 0.0.0.0/8,
               127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/3, ::/127, fe80::/10,
               ff00::/8.

Example config/plugins line:

    resolvable_fromhost reject_type perm

Imports at load: qpsmtpd_stdio.dns, qpsmtpd_stdio.dnswire.
"""

from qpsmtpd_stdio import DECLINED, DENY, DENY_DISCONNECT, DENYSOFT, LOGINFO, LOGWARN, dns
from qpsmtpd_stdio.constants import REJECT_TYPES
from qpsmtpd_stdio.netlist import NetList, parse_ip

MAX_MX = 10
DEFAULT_INVALID = ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3", "::/127", "fe80::/10", "ff00::/8")


def register(plugin, *args):
    plugin.opts = plugin.options({"reject": "1", "reject_type": "temp"})


def hook_mail(plugin, txn, sender, params):
    if plugin.is_immune(quiet=True):
        txn.notes["resolvable_fromhost"] = "whitelist"
        return DECLINED
    host = sender.host.lower().rstrip(".")
    if not host:
        txn.notes["resolvable_fromhost"] = "null"
        return DECLINED
    txn.notes["resolvable_fromhost_host"] = host
    if host.startswith("["):
        txn.notes["resolvable_fromhost"] = "ip"
        return DECLINED
    outcome, why = check(plugin, host)
    txn.notes["resolvable_fromhost"] = outcome if outcome in ("mx", "a") else why
    if outcome in ("mx", "a"):
        plugin.log(LOGINFO, f"pass, {why}")
        return DECLINED
    if outcome == "temp":
        code, message = DENYSOFT, f"4.4.3 Temporary failure looking up {host} ({why}); try again later"
    elif outcome == "nullmx":
        code, message = DENY, "5.7.27 Sender address has null MX"
    else:
        code = REJECT_TYPES.get(plugin.opts["reject_type"].lower(), DENYSOFT)
        message = f"Sender domain {host} cannot receive mail ({why})"
        message = ("5.1.8 " if code in (DENY, DENY_DISCONNECT) else "4.1.8 ") + message
    result = plugin.get_reject(message, why)  # the naughty note keeps the enhanced code
    return DECLINED if result == DECLINED else (code, message)  # a DNS failure is never 5xx, a null MX always


def hook_disconnect(plugin, txn):
    dns.close(plugin)


def check(plugin, host):
    """(outcome, why): outcome is mx, a, nullmx, fail or temp."""
    resolver = dns.resolver(plugin)
    mx, a, aaaa = resolver.query(host, "MX"), resolver.query(host, "A"), resolver.query(host, "AAAA")
    answer = mx.answer()
    if answer.temporary:
        return "temp", f"MX: {answer.status}"
    if answer.status == "NXDOMAIN":
        return "fail", f"{host} does not exist"
    invalid = networks(plugin)
    if answer.records:
        exchanges = [name for _, name in sorted(answer.records)]
        if not any(exchanges):
            return "nullmx", f"{host} has a null MX"
        exchanges = [name for name in exchanges if name][:MAX_MX]
        queries = [(name, resolver.query(name, "A"), resolver.query(name, "AAAA")) for name in exchanges]
        temporary = False
        for name, *lookups in queries:
            if usable(name, invalid):  # an address in an MX: wrong, but usable
                return "mx", f"{host} has MX at {name}"
            for lookup in lookups:
                found = lookup.answer()
                temporary |= found.temporary
                if any(usable(address, invalid) for address in found.records):
                    return "mx", f"{host} has MX at {name}"
        if temporary:
            return "temp", f"MX hosts of {host}: no answer"
        return "fail", f"no MX host of {host} has a usable address"
    found = [a.answer(), aaaa.answer()]
    if any(usable(address, invalid) for f in found for address in f.records):
        return "a", f"{host} has an address"
    if any(f.temporary for f in found):
        return "temp", f"A/AAAA: {found[0].status}/{found[1].status}"
    return "fail", f"{host} has no MX and no usable address"


def networks(plugin):
    invalid = NetList(plugin.config("invalid_resolvable_fromhost") or DEFAULT_INVALID)
    for line in invalid.bad:
        plugin.log(LOGWARN, f"config invalid_resolvable_fromhost: not a network: {line!r}")
    return invalid


def usable(address, invalid):
    return parse_ip(address) is not None and address not in invalid
