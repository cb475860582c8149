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

Needs dkimpy (`pip install 'qpsmtpd-stdio[dkim]'`), imported only after DATA.
qpsmtpd's ADSP policy checks (RFC 5617, now historic) are left out.

Config files: dkim/DOMAIN/{selector,private}, me-auth-results, me.

Example config/plugins line (before dmarc, and before spamassassin, which
may remove X-Spam-* fields that a signature covers):

    dkim reject 0
"""

from qpsmtpd_stdio import DECLINED, DENYSOFT, LOGINFO, LOGWARN, dns
from qpsmtpd_stdio.authresults import add_auth_result

MAX_SIGNATURES = 10
RANK = ("pass", "temperror", "fail", "policy", "permerror", "neutral", "none")


def register(plugin, *args):
    plugin.opts = plugin.options({"reject": "0", "reject_type": "perm"})


def load_dkim():
    """dkimpy, without the dnspython import its DNS module does (~40-90 ms): our resolver is passed to every call."""
    import sys
    import types

    if "dkim" not in sys.modules and "dkim.dnsplug" not in sys.modules:
        stub = types.ModuleType("dkim.dnsplug")
        stub.get_txt = lambda name, timeout=5: None
        sys.modules["dkim.dnsplug"] = stub
    import dkim

    return dkim


def hook_data_post(plugin, txn):
    conn = plugin.connection
    if conn.relay_client:
        return sign(plugin, txn)
    if plugin.is_immune(txn):
        return DECLINED
    if conn.notes.get("naughty"):
        plugin.log(LOGINFO, "skip, naughty")
        return DECLINED
    results = verify(plugin, txn)
    txn.notes["dkim_results"] = results
    txn.notes["dkim_pass_domains"] = [r["domain"] for r in results if r["result"] == "pass"]
    best = min((r["result"] for r in results), key=RANK.index, default="none")
    conn.notes["dkim_result"] = best
    for entry in [entry_text(r) for r in results] or ["dkim=none"]:
        note_result(txn, entry)
    conn.notes["karma"] = conn.notes.get("karma", 0) + {"pass": 1, "fail": -1}.get(best, 0)
    plugin.log(LOGINFO, ", ".join(f"{r['result']} {r['domain']}" + (f" ({r['reason']})" if r["reason"] else "")
                                 for r in results) or "none, no signature")
    if best == "temperror" and plugin.opts["reject"] not in ("0", "naughty"):
        return DENYSOFT, "4.4.3 DKIM key lookup failed, try again later"
    if best != "fail":
        return DECLINED
    failed = next(r for r in results if r["result"] == "fail")
    return plugin.get_reject(f"DKIM signature invalid ({failed['reason'] or 'fail'})", "signature failed", enhanced="7.20")


def verify(plugin, txn):
    dkim = load_dkim()
    resolver = dns.resolver(plugin)
    verifier = dkim.DKIM(b"".join(txn.message_chunks(b"\r\n")), logger=_Log(), timeout=resolver.timeout)
    signatures = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"][:MAX_SIGNATURES]
    tags = [parse_tags(value) for value in signatures]
    for t in tags:  # every key query goes out now; each verify() below reads its answer
        if t.get("s") and t.get("d"):
            resolver.query(f"{t['s']}._domainkey.{t['d']}", "TXT")
    results = []
    for idx, t in enumerate(tags):
        state = {}

        def txt(name, timeout=5, state=state):
            answer = resolver.lookup(name.decode("ascii", "replace") if isinstance(name, bytes) else name, "TXT")
            state["status"] = answer.status
            if answer.temporary:
                raise dkim.DnsTimeoutError(answer.status)
            return answer.records[0].encode("latin-1") if answer.records else None

        verifier.logger.errors.clear()
        try:
            result, reason = ("pass", "") if verifier.verify(idx, dnsfunc=txt) else ("fail", "signature did not verify")
        except dkim.KeyFormatError as exc:
            result, reason = ("policy" if "too small" in str(exc) else "permerror"), str(exc)
        except dkim.ValidationError as exc:
            result, reason = ("fail" if "body hash" in str(exc) else "neutral"), str(exc)
        except dkim.DKIMException as exc:
            result, reason = "neutral", str(exc)
        if result == "fail" and state.get("status") and not state["status"] == "NOERROR":
            result, reason = ("temperror", state["status"]) if state["status"] not in dns.FINAL else ("permerror", "no key")
        elif result == "fail" and verifier.logger.errors:
            result, reason = "permerror", verifier.logger.errors[-1]
        reason = dns.printable(reason.split(" (got ")[0], 100).replace("(", "[").replace(")", "]").replace("\\", "/")
        results.append({"result": result, "reason": reason,
                        "domain": t.get("d", "").lower(), "selector": t.get("s", ""), "identity": t.get("i", ""),
                        "b": t.get("b", "")[:8]})
    return results


def entry_text(r):
    parts = [f"dkim={r['result']}"] + ([f"({r['reason']})"] if r["reason"] and r["result"] != "pass" else [])
    for key, value in (("header.d", r["domain"]), ("header.i", r["identity"]), ("header.s", r["selector"]),
                       ("header.b", r["b"])):
        if value:
            ok = all(c.isalnum() or c in "-._@" for c in value)
            parts.append(f"{key}={value}" if ok else f'{key}="{value}"')
    return " ".join(parts)


def parse_tags(value):
    tags = {}
    for item in value.decode("ascii", "replace").split(";"):
        key, _, val = item.partition("=")
        tags[key.strip()] = "".join(val.split())
    return tags


def sign(plugin, txn):
    domain = from_domain(txn.header.get("From") or "") or (txn.sender.host if txn.sender else "")
    labels = domain.lower().rstrip(".").split(".")
    if not all(label and all(c.isalnum() or c == "-" for c in label) and label.isascii() for label in labels):
        labels = []  # never a path (`..`, `/`) into the config dir
    for i in range(len(labels) - 1):
        candidate = ".".join(labels[i:])
        selector = plugin.config(f"dkim/{candidate}/selector")
        key = plugin.config(f"dkim/{candidate}/private")
        if selector and key:
            break
    else:
        plugin.log(LOGINFO, f"skip, DKIM not configured for {domain or 'this sender'}")
        return DECLINED
    dkim = load_dkim()
    try:
        signer = dkim.DKIM(b"".join(txn.message_chunks(b"\r\n")), logger=_Log())
        value = signer.sign(selector[0].encode(), candidate.encode(), "\n".join(key).encode() + b"\n",
                            canonicalize=(b"relaxed", b"relaxed"))
    except dkim.DKIMException as exc:
        plugin.log(LOGWARN, f"error, cannot sign for {candidate}: {exc}")
        return DECLINED
    lines = [line.strip() for line in value.decode("ascii").split("\r\n")]
    lines[0] = lines[0].partition(":")[2].strip()
    txn.header.add_folded("DKIM-Signature", [line for line in lines if line], prepend=True)
    plugin.log(LOGINFO, f"pass, signed as {candidate} with selector {selector[0]}")
    return DECLINED


def from_domain(value):
    """The domain of the (first) address in a From value, lower-case, or ""."""
    depth, out = 0, []
    for c in value[:2000]:  # drop comments
        depth += c == "("
        if not depth:
            out.append(c)
        depth -= c == ")" and depth > 0
    text = "".join(out)
    if "<" in text:
        text = text.rpartition("<")[2].partition(">")[0]
    return text.rpartition("@")[2].strip().strip(">").strip().lower() if "@" in text else ""


def note_result(txn, entry):
    """Record an Authentication-Results entry; the session writes the field after data_post."""
    add_auth_result(txn.notes, entry)


class _Log:
    """dkimpy's logger: its errors are kept (they say why a key was refused); the rest is dropped."""

    def __init__(self):
        self.errors = []

    def error(self, message, *args):
        self.errors.append(str(message))

    def debug(self, *args, **kw):
        pass

    info = warning = debug
