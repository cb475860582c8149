"""dkim - verify every DKIM signature of incoming mail; sign mail from relay clients

Arguments: `dkim [reject 0|1|naughty] [reject_type perm|temp|disconnect|temp_disconnect]`

  reject       0 (default): only record the results; 1: refuse a message
               whose signatures all failed (554 5.7.20), and defer one whose
               keys could not be fetched (451 4.4.3); naughty: leave the
               refusal to the naughty plugin. (qpsmtpd's default is 1; RFC
               6376 6.3 asks that a failed signature be treated as no
               signature, and DMARC is the place for policy.)
  reject_type  perm (default), temp, disconnect, temp_disconnect.

Verifying (clients that are not relay clients): each DKIM-Signature (at
most 10) is checked with dkimpy, the keys fetched with the connection's
resolver (config dns_servers, dns_timeout, dns_budget; see
qpsmtpd_stdio/dns.py), all queries sent at once. Each gives one
Authentication-Results entry (RFC 8601, RFC 6008 header.b):
`dkim=pass header.d=example.org header.i=@example.org header.s=sel header.b="AbCd1234"`;
fail (the signature or body hash does not verify), neutral (a malformed
signature), permerror (no usable key), policy (a key under 1024 bits),
temperror (DNS failed); `dkim=none` when there is no signature. Notes:
transaction `dkim_results` (a list of dicts: result, domain, selector,
identity, reason) and `dkim_pass_domains` (for dmarc); connection
`dkim_result` (the best result). A pass raises the connection's karma by 1,
a fail lowers it. Whitelisted and naughty connections are not checked.

Signing (relay clients and authenticated users): the From domain's key, as
in qpsmtpd: config/dkim/DOMAIN/selector and config/dkim/DOMAIN/private (a
PEM RSA key), else those of the nearest parent domain. The signature is
rsa-sha256, relaxed/relaxed, over RFC 6376's recommended fields, with From
signed twice so none can be added. No key for the domain: not signed. A
symlinked key directory signs with the name it was reached by (qpsmtpd uses
the link's target).

Needs dkimpy (`pip install 'qpsmtpd-stdio[dkim]'`), imported only for a
message that has a DKIM-Signature or must be signed (about 12 ms of CPU).
qpsmtpd's ADSP policy checks (RFC 5617, now historic) are left out.

Config files: dkim/DOMAIN/{selector,private}, me-auth-results, me.

Example config/plugins line (before dmarc, and before spamassassin, which
may remove X-Spam-* fields that a signature covers):

    dkim reject 0

Imports at load: qpsmtpd_stdio.authresults, qpsmtpd_stdio.dmarcpolicy, qpsmtpd_stdio.dns, qpsmtpd_stdio.dnswire.
"""

from qpsmtpd_stdio import DECLINED, DENYSOFT, LOGINFO, LOGWARN, dns
from qpsmtpd_stdio.authresults import add_auth_result
from qpsmtpd_stdio.dmarcpolicy import from_domains


def register(plugin, *args):
    plugin.opts = plugin.options({"reject": "0", "reject_type": "perm"})


def hook_data_post(plugin, txn):
    conn = plugin.connection
    if conn.relay_client:
        return sign(plugin, txn)
    if plugin.is_immune(txn):
        return DECLINED
    if plugin.is_naughty():
        return DECLINED
    from qpsmtpd_stdio.dkimcheck import RANK, verify  # dkimcheck imports dkimpy only when verify() runs

    if txn.header.count("DKIM-Signature"):
        results = verify(b"".join(txn.message_chunks(b"\r\n")), dns.resolver(plugin))
    else:  # dkimpy (~20 ms to import) and the message bytes only for a signed message
        results = []
    txn.notes["dkim_results"] = results
    txn.notes["dkim_pass_domains"] = [r["domain"] for r in results if r["result"] == "pass"]
    best = min((r["result"] for r in results), key=RANK.index, default="none")
    conn.notes["dkim_result"] = best
    for r in results:
        add_auth_result(txn.notes, "dkim", r["result"], [("header.d", r["domain"] or None), ("header.i", r["identity"] or None),
                        ("header.s", r["selector"] or None), ("header.b", r["b"] or None)],
                        comment=r["reason"] if r["result"] != "pass" else "")
    if not results:
        add_auth_result(txn.notes, "dkim", "none")
    conn.notes["karma"] = conn.notes.get("karma", 0) + {"pass": 1, "fail": -1}.get(best, 0)
    plugin.log(LOGINFO, ", ".join(f"{r['result']} {r['domain']}" + (f" ({r['reason']})" if r["reason"] else "")
                                 for r in results) or "none, no signature")
    if best == "temperror" and plugin.opts["reject"] not in ("0", "naughty"):
        return DENYSOFT, "4.4.3 DKIM key lookup failed, try again later"
    if best != "fail":
        return DECLINED
    failed = next(r for r in results if r["result"] == "fail")
    return plugin.get_reject(f"DKIM signature invalid ({failed['reason'] or 'fail'})", "signature failed", enhanced="7.20")


def sign(plugin, txn):
    from qpsmtpd_stdio.dkimcheck import load, sign as dkim_sign, signing_key

    domain = (from_domains(txn.header.get("From") or "") or [txn.sender.host if txn.sender else ""])[0]
    found = signing_key(plugin.config, domain)
    if found is None:
        plugin.log(LOGINFO, f"skip, DKIM not configured for {domain or 'this sender'}")
        return DECLINED
    candidate, selector, key = found
    try:
        lines = dkim_sign(b"".join(txn.message_chunks(b"\r\n")), candidate, selector, key)
    except load().DKIMException as exc:
        plugin.log(LOGWARN, f"error, cannot sign for {candidate}: {exc}")
        return DECLINED
    txn.header.add_folded("DKIM-Signature", lines, prepend=True)
    plugin.log(LOGINFO, f"pass, signed as {candidate} with selector {selector}")
    return DECLINED
