r"""helo - check the name a client gives in HELO or EHLO

Arguments: `helo [policy lenient|rfc|strict] [reject 0|1|naughty] [reject_type TYPE] [timeout N]`

  policy       which checks run, in this order (default lenient):
                 lenient  is_in_badhelo, invalid_localhost, is_forged_literal, is_plain_ip
                 rfc      lenient + is_not_fqdn
                 strict   rfc + is_address_literal
  reject       1 (default): refuse HELO/EHLO; 0: only log; naughty: store the
               refusal in the connection note `naughty` for a later `naughty`
               plugin (none ships yet: until then the failure is only logged).
  reject_type  disconnect (default: 550, then hang up), perm (550), temp
               (450), temp_disconnect (421). (qpsmtpd 0.94 ignores it.)
  timeout      DNS timeout: accepted, unused until the DNS checks come.

Config files:
  badhelo  one name or pattern a line. A line holding any of {}[]()^$|*+?\!
           is a regular expression (Python `re` syntax; qpsmtpd: Perl)
           searched case-insensitively in the name; a leading ! negates it.
           Other lines are names, compared case-insensitively. Every line is
           checked (qpsmtpd 0.94 stops at the first pattern line).

Not yet: qpsmtpd's DNS checks (rfc: no_forward_dns, no_reverse_dns; strict:
no_matching_dns; the notes helo_forward_match/helo_reverse_match) need
lookups and come with the DNS work in a later issue; they are skipped.

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

import re

from qpsmtpd_stdio import DECLINED, DENY, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT, LOGDEBUG, LOGINFO, LOGWARN

MAX_CHECKED = 255  # a domain name is at most 255 octets; longer input never reaches a regex
_REGEX_CHARS = frozenset("{}[]()^$|*+?\\!")
_REJECT_TYPES = {"perm": DENY, "hard": DENY, "temp": DENYSOFT, "soft": DENYSOFT,
                 "disconnect": DENY_DISCONNECT, "temp_disconnect": DENYSOFT_DISCONNECT}
_FQDN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")
_LENIENT = ("is_in_badhelo", "invalid_localhost", "is_forged_literal", "is_plain_ip")
_POLICIES = {"lenient": _LENIENT, "rfc": _LENIENT + ("is_not_fqdn",),
             "strict": _LENIENT + ("is_not_fqdn", "is_address_literal")}


def register(plugin, *args):
    plugin.opts = plugin.options({"policy": "lenient", "reject": "1", "reject_type": "disconnect"})
    policy = plugin.opts["policy"].lower()
    if policy not in _POLICIES:
        raise ValueError(f"helo: unknown policy {policy!r} (lenient, rfc or strict)")
    plugin.tests = [globals()[name] for name in _POLICIES[policy]]
    if policy != "lenient":
        plugin.log(LOGDEBUG, "DNS checks (no_forward_dns, no_reverse_dns, no_matching_dns) not yet done; skipped")


def hook_helo(plugin, txn, host):
    conn = plugin.connection
    if conn.relay_client or conn.notes.get("whitelisthost"):
        plugin.log(LOGINFO, "skip, relay client or whitelisted")
        return DECLINED
    for test in plugin.tests:
        failed = test(plugin, host)
        if failed:
            return reject(plugin, *failed)
    plugin.log(LOGDEBUG, "pass")
    return DECLINED


hook_ehlo = hook_helo


def hook_data_post(plugin, txn):
    txn.header.delete("X-HELO")
    if plugin.connection.hello_host:
        txn.add_header("X-HELO", plugin.connection.hello_host)


def is_in_badhelo(plugin, host):
    host = host.lower()
    for bad in plugin.config("badhelo"):
        if not _REGEX_CHARS.intersection(bad):
            if host == bad.lower():
                return f"I do not believe you are {host}.", "in badhelo"
            continue
        if len(host) > MAX_CHECKED:
            plugin.log(LOGWARN, f"name of {len(host)} octets not matched against pattern {bad}")
            continue
        negate = bad.startswith("!")
        try:
            found = re.search(bad[1:] if negate else bad, host, re.IGNORECASE) is not None
        except re.error as exc:
            plugin.log(LOGWARN, f"config badhelo: bad pattern {bad!r} skipped: {exc}")
            continue
        if found != negate:
            return "Your HELO hostname is not allowed", f"badhelo pattern match ({bad})"
    return None


def invalid_localhost(plugin, host):
    ip = plugin.connection.remote_ip
    if host.lower() == "localhost" and not (ip.startswith("127.") or ip == "::1"):
        return "You are not localhost", "invalid localhost"
    return None


def is_forged_literal(plugin, host):
    literal = _literal(host)
    if literal is not None and literal != _normal_ip(plugin.connection.remote_ip):
        return "Forged IPs not accepted here", "forged IP literal"
    return None


def is_plain_ip(plugin, host):
    if _is_ipv4(host) or (":" in host and _normal_ip(host) is not None):
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


def _is_ipv4(text):
    parts = text.split(".")
    return len(parts) == 4 and all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts)


def _literal(host):
    """The address in an address literal ([192.0.2.1], [IPv6:2001:db8::1]) in normal form, else None."""
    if not (host.startswith("[") and host.endswith("]")):
        return None
    inner = host[1:-1]
    if inner[:5].lower() == "ipv6:":
        return _normal_ip(inner[5:]) if ":" in inner[5:] else None
    return inner if _is_ipv4(inner) else None


def _normal_ip(text):
    if ":" not in text:
        return text
    import ipaddress  # only for IPv6 clients and literals

    try:
        ip = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    return str(ip.ipv4_mapped or ip)


def reject(plugin, message, why):
    """qpsmtpd's get_reject: the result for a failed check, by the `reject` and `reject_type` arguments."""
    how = plugin.opts["reject"].lower()
    if how == "0":
        plugin.log(LOGINFO, f"fail, tolerated: {why}")
        return DECLINED
    if how == "naughty":
        notes = plugin.connection.notes
        notes["naughty"] = f"{notes['naughty']}\r\n{message}" if notes.get("naughty") else message
        notes.setdefault("naughty_reject_type", plugin.opts["reject_type"])
        plugin.log(LOGINFO, f"fail, NAUGHTY: {why}")
        return DECLINED
    plugin.log(LOGINFO, f"fail: {why}")
    return _REJECT_TYPES.get(plugin.opts["reject_type"].lower(), DENY_DISCONNECT), message
