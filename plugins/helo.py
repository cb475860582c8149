r"""helo - check the name a client gives in HELO or EHLO

Arguments: `helo [policy lenient|rfc|strict] [dns 0|1] [reject 0|1|naughty] [reject_type TYPE] [timeout N]`

  policy       which checks run, in this order (default lenient):
                 lenient  is_in_badhelo, invalid_localhost, is_forged_literal, is_plain_ip
                 rfc      lenient + is_not_fqdn
                 strict   rfc + is_address_literal
  dns          1: add qpsmtpd's DNS checks to policy rfc (no_forward_dns,
               no_reverse_dns) and strict (those and no_matching_dns).
               qpsmtpd runs them in rfc/strict always; here they are asked
               for, since they make HELO wait for DNS and refuse every client
               without reverse DNS (qpsmtpd advises reject 0 with them).
               Default 0.
  reject       1 (default): refuse HELO/EHLO; 0: only log; naughty: store the
               refusal in the connection note `naughty` for a later `naughty`
               plugin.
  reject_type  disconnect (default: 550, then hang up), perm (550), temp
               (450), temp_disconnect (421). (qpsmtpd 0.94 ignores it.)
  timeout      accepted for qpsmtpd's config; the DNS timeouts are the
               config files dns_timeout and dns_budget (qpsmtpd_stdio/dns.py).

Config files:
  badhelo  one name or pattern a line. A line holding any of {}[]()^$|*+?\!
           is a regular expression (Python `re` syntax; qpsmtpd: Perl)
           searched case-insensitively in the name; a leading ! negates it.
           Other lines are names, compared case-insensitively. Every line is
           checked (qpsmtpd 0.94 stops at the first pattern line).

The DNS checks (`dns 1`): the client's PTR query goes out at connect, the
name's A and AAAA at HELO. no_forward_dns refuses a name with no A/AAAA
("HELO hostname does not exist" on NXDOMAIN, else "HELO hostname did not
resolve"), no_reverse_dns a client with no PTR ("no reverse DNS for IP");
a DNS failure skips the check and no_matching_dns (never a refusal). They set the
connection notes helo_forward_match (an address of the name is the
client's, or in its /24, as qpsmtpd) and helo_reverse_match (a PTR name is
the name, or shares its last two labels); no_matching_dns refuses when
neither is set ("That HELO hostname fails FCrDNS").

Replies: "I do not believe you are NAME." (listed in badhelo), "Your HELO
hostname is not allowed" (badhelo pattern), "You are not localhost"
(`localhost` from outside 127.0.0.0/8 and ::1), "Forged IPs not accepted
here" (an address literal, [IPv4] or [IPv6:...], not the client's), "Plain
IP is invalid HELO hostname (RFC 2821)", "HELO name is not fully qualified.
Read RFC 2821" (no dot), "HELO name contains invalid FQDN characters. Read
RFC 1035", "RFC 2821 allows an address literal, but we do not".

Relay clients and whitelisted connections are not checked. After the data,
the header `X-HELO: NAME` replaces any earlier one; it is appended, not put on
top as qpsmtpd does, so the trace fields stay first (RFC 5322 3.6.7).

Example config/plugins line:

    helo policy rfc reject 1
"""

from qpsmtpd_stdio import DECLINED, LOGDEBUG, LOGINFO, dns
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
    conn = plugin.connection
    conn.notes.pop("helo_forward_match", None)
    conn.notes.pop("helo_reverse_match", None)
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
    return None


def is_forged_literal(plugin, host):
    literal = _literal(host)
    if literal is not None and literal != plugin.connection.remote_ip:
        return "Forged IPs not accepted here", "forged IP literal"
    return None


def is_plain_ip(plugin, host):
    if _is_ipv4(host) or (":" in host and canonical_ip(host) != ""):
        return "Plain IP is invalid HELO hostname (RFC 2821)", "plain IP"
    return None


def is_not_fqdn(plugin, host):
    if _literal(host) is not None:
        return None  # an address literal is not a name
    if "." not in host:
        return "HELO name is not fully qualified. Read RFC 2821", "not FQDN"
    if not _FQDN_CHARS.issuperset(host):
        return "HELO name contains invalid FQDN characters. Read RFC 1035", "invalid FQDN chars"
    return None


def is_address_literal(plugin, host):
    if _literal(host) is not None:
        return "RFC 2821 allows an address literal, but we do not", "bracketed IP"
    return None


def no_forward_dns(plugin, host):
    if _literal(host) is not None:
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
    if notes.get("helo_forward_match") or notes.get("helo_reverse_match") or plugin.dns_failed:
        return None
    return "That HELO hostname fails FCrDNS", "no matching DNS"


def _is_ipv4(text):
    parts = text.split(".")
    return len(parts) == 4 and all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts)


def _literal(host):
    """The address in an address literal ([192.0.2.1], [IPv6:2001:db8::1]) in normal form, else None."""
    if not (host.startswith("[") and host.endswith("]")):
        return None
    inner = host[1:-1]
    if inner[:5].lower() == "ipv6:":
        return (canonical_ip(inner[5:]) or None) if ":" in inner[5:] else None
    return inner if _is_ipv4(inner) else None
