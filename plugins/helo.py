"""helo - check the name a client gives in HELO or EHLO

Arguments: `helo [policy lenient|rfc|strict] [dns 0|1] [reject 0|1|naughty] [reject_type TYPE] [timeout N]`

  policy       which checks run, in this order (default lenient):
                 lenient  is_in_badhelo, invalid_localhost, is_forged_literal, is_plain_ip
                 rfc      lenient + is_not_fqdn
                 strict   rfc + is_address_literal
  dns          1: add qpsmtpd's DNS checks (they make HELO wait for DNS) to rfc
               (no_forward_dns, no_reverse_dns) and strict (+ no_matching_dns).
  reject       1 (default): refuse; 0: only log; naughty: leave it to `naughty`.
  reject_type  disconnect (default: 550, then hang up), perm, temp, temp_disconnect.
  timeout      seconds each of its DNS queries waits (default: dns_timeout).

Config file badhelo: one name or pattern a line. A line holding any of
{}[]()^$|*+?\! is a regular expression searched case-insensitively (a leading
! negates it); other lines are names, compared case-insensitively.

A DNS failure skips the DNS checks. They set the notes helo_forward_match (the
name has the client's address, or one in its /24) and helo_reverse_match (a
PTR name is the name or ends in its last two labels), which no_matching_dns needs.
Relay clients are not checked. `X-HELO: NAME` is appended after the data.

Example config/plugins line:

    helo policy rfc reject 1

Imports at load: qpsmtpd_stdio.dns, qpsmtpd_stdio.dnswire.
"""

from qpsmtpd_stdio import DECLINED, LOGDEBUG, LOGINFO, dns
from qpsmtpd_stdio.address import literal_ip
from qpsmtpd_stdio.netlist import canonical_ip
from qpsmtpd_stdio.patterns import helo_listed

_FQDN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")
_LENIENT = ("is_in_badhelo", "invalid_localhost", "is_forged_literal", "is_plain_ip")
_POLICIES = {"lenient": _LENIENT, "rfc": _LENIENT + ("is_not_fqdn",),
             "strict": _LENIENT + ("is_not_fqdn", "is_address_literal")}
_DNS_CHECKS = {"lenient": (), "rfc": ("no_forward_dns", "no_reverse_dns"),
               "strict": ("no_forward_dns", "no_reverse_dns", "no_matching_dns")}


def register(plugin, *args):
    plugin.opts = plugin.options({"policy": "lenient", "dns": "0", "reject": "1", "reject_type": "disconnect"})
    policy = plugin.opts["policy"].lower()
    if policy not in _POLICIES:
        raise ValueError(f"helo: unknown policy {policy!r} (lenient, rfc or strict)")
    checks = _POLICIES[policy] + (_DNS_CHECKS[policy] if plugin.opts["dns"] == "1" else ())
    plugin.tests = [globals()[name] for name in checks]
    plugin.uses_dns = checks != _POLICIES[policy]


def hook_connect(plugin, txn):
    if plugin.uses_dns and dns.ptr_name(plugin.connection.remote_ip):
        dns.resolver(plugin).query(dns.ptr_name(plugin.connection.remote_ip), "PTR")  # read at HELO
    return DECLINED


def hook_helo(plugin, txn, host):
    if plugin.is_immune(quiet=True):
        plugin.log(LOGINFO, "skip, relay client or whitelisted")
        return DECLINED
    plugin.connection.notes.pop("helo_forward_match", None)
    plugin.connection.notes.pop("helo_reverse_match", None)
    plugin.dns_failed = False
    for test in plugin.tests:
        failed = test(plugin, host)
        if failed:
            return plugin.get_reject(*failed, default_type="disconnect")
    plugin.log(LOGDEBUG, "pass")
    return DECLINED


hook_ehlo = hook_helo


def hook_data_post(plugin, txn):
    txn.header.delete("X-HELO")
    if plugin.connection.hello_host:
        txn.add_header("X-HELO", plugin.connection.hello_host)


def is_in_badhelo(plugin, host):
    return helo_listed(plugin.config("badhelo"), host, plugin.log)


def invalid_localhost(plugin, host):
    ip = plugin.connection.remote_ip
    if host.lower() == "localhost" and not (ip.startswith("127.") or ip == "::1"):
        return "You are not localhost", "invalid localhost"


def is_forged_literal(plugin, host):
    if _bracketed(host) and literal_ip(host) != plugin.connection.remote_ip:
        return "Forged IPs not accepted here", "forged IP literal"


def is_plain_ip(plugin, host):
    parts = host.split(".")  # qpsmtpd's \d{1,3}(\.\d{1,3}){3}, or any IPv6 address
    if len(parts) == 4 and all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts) or canonical_ip(host):
        return "Plain IP is invalid HELO hostname (RFC 2821)", "plain IP"


def is_not_fqdn(plugin, host):
    if _bracketed(host):
        return None  # an address literal is not a name
    if "." not in host:
        return "HELO name is not fully qualified. Read RFC 2821", "not FQDN"
    if not _FQDN_CHARS.issuperset(host):
        return "HELO name contains invalid FQDN characters. Read RFC 1035", "invalid FQDN chars"


def is_address_literal(plugin, host):
    if _bracketed(host):
        return "RFC 2821 allows an address literal, but we do not", "bracketed IP"


def no_forward_dns(plugin, host):
    if _bracketed(host):
        return None
    answers = dns.resolver(plugin).lookup_many([(host, "A"), (host, "AAAA")])
    if all(a.status == "NXDOMAIN" for a in answers):
        return "HELO hostname does not exist", "no such host"
    addresses = [address for a in answers for address in a.records]
    if not addresses and any(a.temporary for a in answers):
        plugin.log(LOGINFO, f"skip no_forward_dns: {answers[0].status}/{answers[1].status}")
        plugin.dns_failed = True
    elif not addresses:
        return "HELO hostname did not resolve", "no forward DNS"
    ip = plugin.connection.remote_ip
    for address in map(canonical_ip, addresses):
        if address and (address == ip or ("." in ip and address.rpartition(".")[0] == ip.rpartition(".")[0])):
            plugin.connection.notes["helo_forward_match"] = 1  # the client's address, or its /24
    return None


def no_reverse_dns(plugin, host):
    ip = plugin.connection.remote_ip
    if not dns.ptr_name(ip):
        return None
    answer = dns.resolver(plugin).lookup(dns.ptr_name(ip), "PTR")
    if answer.temporary:
        plugin.log(LOGINFO, f"skip no_reverse_dns: {answer.status}")
        plugin.dns_failed = True
        return None
    if not answer.records:
        return f"no reverse DNS for {ip}", "no rDNS"
    host = host.lower().rstrip(".")
    for name in (n.lower() for n in answer.records if "." in n):
        if name == host or name.split(".")[-2:] == host.split(".")[-2:]:
            plugin.connection.notes["helo_reverse_match"] = 1  # the name, or the same last two labels
    return None


def no_matching_dns(plugin, host):
    notes = plugin.connection.notes
    if not (notes.get("helo_forward_match") or notes.get("helo_reverse_match") or plugin.dns_failed):
        return "That HELO hostname fails FCrDNS", "no matching DNS"


def _bracketed(host):
    return host.startswith("[") and host.endswith("]")
