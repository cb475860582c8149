"""sender_permitted_from - check the sender's SPF record (RFC 7208); also listed as `spf`

Arguments: `sender_permitted_from [reject 0..6]` (qpsmtpd's `spf_deny 1|2`
is read as reject 3|4)

  reject  what is refused at MAIL, by SPF result (default: config file
          `spfbehavior`, else 1):
            0, 1  nothing: annotate only (Received-SPF, Authentication-Results)
            2     also 450 for temperror and for fail
            3     550 for fail; 450 for softfail
            4     550 for softfail too; 450 for permerror
            5     550 for neutral too
            6     550 for none and permerror too
          Refusals carry RFC 7372's codes: 5.7.23 (fail, softfail, neutral,
          none), 4.7.24 / 5.7.24 (temperror, permerror), and the domain's
          exp= explanation when it has one.

The identity checked is the MAIL FROM domain; for the null sender it is
postmaster@ the HELO name (RFC 7208 2.4). Relay clients and authenticated
users are not checked. The evaluator is qpsmtpd_stdio/spf.py: every
mechanism and modifier, macros, the 10-lookup and 2-void-lookup limits,
tested against the RFC 7208 test suite. Its DNS queries use the connection's
resolver (config files dns_servers, dns_timeout, dns_budget: see
qpsmtpd_stdio/dns.py); a term's queries go out together.

Results: after the data, `Received-SPF:` on top of the message (RFC 7208
9.1) and an `Authentication-Results:` entry `spf=RESULT
smtp.mailfrom=DOMAIN` (RFC 8601); transaction notes `spfquery` (the result
object), `spf_pass_host` (the domain, on pass) and `dmarc_spf`.

Config files: spfbehavior (the default `reject` level), me (the receiver).

Example config/plugins line:

    sender_permitted_from reject 3

Imports at load: qpsmtpd_stdio.authresults, qpsmtpd_stdio.dns, qpsmtpd_stdio.dnswire, qpsmtpd_stdio.spf.
"""

from qpsmtpd_stdio import DECLINED, DENY, DENYSOFT, LOGINFO, LOGWARN, dns
from qpsmtpd_stdio.digits import number
from qpsmtpd_stdio.authresults import add_auth_result
from qpsmtpd_stdio.spf import check_host, received_spf, resolver_lookup

# result -> (lowest `reject` level that refuses with 4xx, lowest that refuses with 5xx, word in the reply)
LEVELS = {"fail": (2, 3, "forgery"), "softfail": (3, 4, "fail"), "neutral": (5, 5, "neutral"),
          "none": (6, 6, "none"), "permerror": (4, 6, "permerror"), "temperror": (2, 7, "temperror")}


def register(plugin, *args):
    opts = plugin.options({})
    reject = opts.get("reject")
    if reject is None and opts.get("spf_deny") in ("1", "2"):
        reject = {"1": "3", "2": "4"}[opts["spf_deny"]]
    if reject is None:
        reject = (plugin.config("spfbehavior") or ["1"])[0]
    if number(reject, 6) is None:
        plugin.log(LOGWARN, f"reject {reject!r} is not 0..6; using 1 (annotate only)")
        reject = "1"
    plugin.reject = int(reject)


def hook_mail(plugin, txn, sender, params):
    conn = plugin.connection
    scope = "mailfrom" if sender.host else "helo"
    if conn.relay_client or conn.auth_user or conn.notes.get("whitelisthost"):
        txn.notes["dmarc_spf"] = {"domain": sender.host, "scope": scope, "result": "pass"}
        plugin.log(LOGINFO, "skip, relay client")
        return DECLINED
    helo = conn.hello_host
    address = f"{sender.user}@{sender.host}" if sender.host else ""
    if not address and not helo or not conn.remote_ip:
        return DECLINED
    me = (plugin.config("me") or ["unknown"])[0]
    result = check_host(conn.remote_ip, address, helo, resolver_lookup(dns.resolver(plugin)), receiver=me)
    txn.notes["spfquery"] = result
    txn.notes["spf_identity"] = (scope, address, helo)
    txn.notes["dmarc_spf"] = {"domain": result.domain, "scope": scope, "result": result.result}
    key = "smtp.mailfrom" if scope == "mailfrom" else "smtp.helo"
    add_auth_result(txn.notes, "spf", result.result, [(key, result.domain)])
    code = result.result
    why = dns.printable(result.explanation or result.why or f"{code} for {result.domain}")
    plugin.log(LOGINFO, f"{code}, {result.domain}: {result.mechanism or why}")
    if code == "pass":
        txn.notes["spf_pass_host"] = result.domain.lower()
        return DECLINED
    level, deny = plugin.reject, LEVELS[code]
    enhanced = "7.24" if code.endswith("error") else "7.23"
    if level >= deny[1]:
        return DENY, f"5.{enhanced} SPF - {deny[2]}: {why}"
    if level >= deny[0]:
        return DENYSOFT, f"4.{enhanced} SPF - {deny[2]}: {why}"
    return DECLINED


def hook_data_post(plugin, txn):
    result = txn.notes.get("spfquery")
    if result is not None:
        scope, address, helo = txn.notes["spf_identity"]
        me = (plugin.config("me") or ["unknown"])[0]
        lines = received_spf(result, plugin.connection.remote_ip, address, helo, me, scope)
        txn.header.add_folded("Received-SPF", lines, prepend=True)
    return DECLINED


def hook_disconnect(plugin, txn):
    dns.close(plugin)
