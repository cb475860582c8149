"""fcrdns - forward-confirmed reverse DNS of the client (the iprev method of RFC 8601)

Arguments: `fcrdns [reject 0|1|naughty] [reject_type temp|perm|disconnect|temp_disconnect] [timeout N]`

  reject       0 (default, as qpsmtpd): record the result only; 1: refuse
               every RCPT (except to postmaster, abuse, mailer-daemon and
               root) unless the result is pass; naughty: store the refusal in
               the connection note `naughty` for a later `naughty` plugin.
  reject_type  temp (default: 450), perm (550), disconnect, temp_disconnect.
               A temperror is always refused as temporary (450).
  timeout      seconds each of its DNS queries waits for a server (default:
               config dns_timeout); dns_budget bounds all (qpsmtpd_stdio/dns.py).

The PTR query goes out at connect. As soon as its answer is in (looked at,
without waiting, at HELO/EHLO and MAIL), the A or AAAA queries for each name
(the first 10) go out together. The result is read at the first RCPT:

  pass       a PTR name has an address that is the client's
  fail       PTR names, but none of them points back to the client
  permerror  no PTR record (NXDOMAIN, or no data)
  temperror  a DNS failure or timeout

Only an exact address match passes (qpsmtpd also accepts any address in the
client's /24, which RFC 8601 does not). Relay clients and authenticated
users are not checked.

Results: the connection notes `fcrdns` (the result) and `fcrdns_host` (the
verified name); the verified name becomes the connection's remote_host when
tcpserver gave none (so the Received header shows it); and the message gets
`Authentication-Results: ME; iprev=pass policy.iprev=IP (NAME)`.

Example config/plugins line:

    fcrdns

Imports at load: qpsmtpd_stdio.authresults, qpsmtpd_stdio.dns, qpsmtpd_stdio.dnswire.
"""

from qpsmtpd_stdio import DECLINED, DENYSOFT, LOGINFO, dns
from qpsmtpd_stdio.authresults import add_auth_result
from qpsmtpd_stdio.netlist import parse_ip

SPECIAL = ("postmaster", "abuse", "mailer-daemon", "root")
MAX_NAMES = 10


def register(plugin, *args):
    plugin.opts = plugin.options({"reject": "0", "reject_type": "temp"})
    plugin.ptr = None
    plugin.forward = None
    plugin.result = None


def hook_connect(plugin, txn):
    ip = plugin.connection.remote_ip
    if plugin.is_immune(quiet=True) or not dns.ptr_name(ip):
        return DECLINED
    plugin.ptr = dns.resolver(plugin).query(dns.ptr_name(ip), "PTR")
    return DECLINED


def hook_helo(plugin, txn, host):
    if plugin.ptr is not None and plugin.forward is None and plugin.ptr.done():
        send_forward(plugin)
    return DECLINED


hook_ehlo = hook_helo


def hook_mail(plugin, txn, sender, params):
    return hook_helo(plugin, txn, "")


def hook_rcpt(plugin, txn, rcpt, params):
    if plugin.ptr is None or plugin.is_immune(quiet=True):
        return DECLINED
    result, name = evaluate(plugin)
    how = plugin.opts["reject"].lower()
    if result == "pass" or how == "0" or rcpt.user.lower() in SPECIAL:
        return DECLINED
    ip = plugin.connection.remote_ip
    message = (f"4.7.25 Your address {ip} has no reverse DNS that points back to it; try again later"
               if result == "temperror" else f"Your address {ip} has no reverse DNS that points back to it")
    if how == "naughty" and "naughty" in plugin.connection.notes:
        return DECLINED  # noted only if no refusal is noted yet (and so once)
    if result == "temperror" and how != "naughty":
        return DENYSOFT, message
    return plugin.get_reject(message, default_type="temp", enhanced="7.25")


def hook_data_post(plugin, txn):
    if plugin.ptr is not None and not plugin.is_immune(quiet=True):
        evaluate(plugin)
    return DECLINED


def hook_disconnect(plugin, txn):
    dns.close(plugin)


def send_forward(plugin):
    answer = plugin.ptr.answer()
    names = [name for name in answer.records if name][:MAX_NAMES]
    rdtype = "AAAA" if ":" in plugin.connection.remote_ip else "A"
    resolver = dns.resolver(plugin)
    plugin.forward = [(name, resolver.query(name, rdtype)) for name in names]


def evaluate(plugin):
    """(result, verified name); computed once, waiting for the answers if need be."""
    if plugin.result is not None:
        return plugin.result
    if plugin.forward is None:
        send_forward(plugin)
    conn = plugin.connection
    ip = conn.remote_ip
    ptr = plugin.ptr.answer()
    mine = parse_ip(ip)
    result, verified = "fail", ""
    if ptr.temporary:
        result = "temperror"
    elif not plugin.forward:
        result = "permerror"
    else:
        failures = 0
        for name, query in plugin.forward:
            answer = query.answer()
            failures += answer.temporary
            if any(parse_ip(address) == mine for address in answer.records):
                result, verified = "pass", name
                break
        else:
            if failures == len(plugin.forward):
                result = "temperror"
    plugin.result = (result, verified)
    conn.notes["fcrdns"] = result
    if verified:
        conn.notes["fcrdns_host"] = verified
        if not conn.remote_host:
            conn.remote_host = verified
    names = ", ".join(name for name, _ in plugin.forward or ())
    plugin.log(LOGINFO, f"{result}, {ip}" + (f" is {verified}" if verified else f" PTR: {names or ptr.status}"))
    add_auth_result(conn.notes, "iprev", result, [("policy.iprev", ip)], comment=verified or "")
    return plugin.result
