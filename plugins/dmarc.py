"""dmarc - apply the From domain's DMARC policy (RFC 7489) to the SPF and DKIM results

Arguments: `dmarc [reject 1|0|naughty] [reject_type perm|temp|disconnect|temp_disconnect] [quarantine accept|reject]`

  reject       1 (default): refuse a message that fails DMARC when the
               domain's policy (after pct) is reject: 554 5.7.1; 0: only
               record; naughty: leave the refusal to the naughty plugin.
  reject_type  perm (default), temp, disconnect, temp_disconnect.
  quarantine   accept (default): deliver mail whose policy is quarantine,
               marked by the Authentication-Results entry and the note
               `dmarc_quarantine` for the delivery agent; reject: refuse it
               as for p=reject.

List it after sender_permitted_from and dkim, whose results it reads
(notes `dmarc_spf` and `dkim_results`); without the spf plugin it checks SPF
itself (qpsmtpd_stdio/spf.py). The From field must hold one address (several
From fields or domains fail as permerror). The policy is looked up at
_dmarc.FROM-DOMAIN and, only when that has none, at the organizational
domain, found with the Public Suffix List of the `publicsuffixlist` package
(`pip install 'qpsmtpd-stdio[dmarc]'`) through a compact index
(qpsmtpd_stdio/publicsuffix.py; the package itself is not imported). DMARC
passes if SPF or a DKIM signature passed for an aligned domain (adkim/aspf:
r, the same organizational domain; s, the same domain). On failure the
policy is sp= for a subdomain whose policy came from its organizational
domain, else p=; a message outside pct= gets the next milder policy. The
entry is `dmarc=fail (p=reject sp=none pct=100 dis=reject) header.from=DOMAIN`.
No policy published: `dmarc=none`, nothing else. A DNS failure:
`dmarc=temperror`, and the message is accepted. A failure with a policy
lowers the connection's karma by 3. Relay clients, whitelisted and naughty
connections are not checked. No reports are sent (rua/ruf are ignored).

Whatever the client, Authentication-Results fields that arrived with the
message and name our authserv-id (config `me-auth-results`, else `me`) are
removed: only we may speak for us. Those of other hosts are kept, moved to
the end of the header.

Config files: me-auth-results, me.

Example config/plugins line:

    dmarc reject 1 quarantine accept

Imports at load: qpsmtpd_stdio.authresults, qpsmtpd_stdio.dmarcpolicy, qpsmtpd_stdio.dns, qpsmtpd_stdio.dnswire.
"""

from qpsmtpd_stdio import DECLINED, LOGINFO, LOGWARN, dns
from qpsmtpd_stdio.authresults import add_auth_result, remove_forged
from qpsmtpd_stdio.dmarcpolicy import MILDER, aligned, from_domains, org_domain, parse_record


def register(plugin, *args):
    plugin.opts = plugin.options({"reject": "1", "reject_type": "perm", "quarantine": "accept"})


def hook_data_post(plugin, txn):
    me = (plugin.config("me-auth-results") or plugin.config("me") or [""])[0].lower()
    forged = remove_forged(txn.header, me)
    if forged:
        plugin.log(LOGWARN, f"removing {forged} inbound Authentication-Results claiming to be from {me}")
    conn = plugin.connection
    if plugin.is_immune(txn):
        return DECLINED
    if plugin.is_naughty():
        return DECLINED
    domains = {d for value in txn.header.get_all("From") for d in from_domains(value)}
    if len(domains) != 1 or txn.header.count("From") != 1:
        if not domains:
            plugin.log(LOGINFO, "skip, no From domain")
            return DECLINED
        add_auth_result(txn.notes, "dmarc", "permerror", comment="more than one From domain")
        return plugin.get_reject("A message must have one From address", "several From domains", enhanced="7.1")
    domain = domains.pop()
    resolver = dns.resolver(plugin)
    record, at_org, org = None, False, domain
    for step in ("domain", "org"):
        if step == "org":  # RFC 7489 6.6.3: no record at the From domain; the organizational domain's, if other
            org = org_domain(domain)
            if org == domain:
                break
        answer = resolver.lookup(f"_dmarc.{org}", "TXT")
        if answer.temporary:
            add_auth_result(txn.notes, "dmarc", "temperror", [("header.from", domain)])
            plugin.log(LOGWARN, f"policy lookup for {org}: {answer.status}; accepting")
            return DECLINED
        found = [r for r in answer.records if r[:8].lower() == "v=dmarc1" and r[8:9] in ("", ";", " ", "\t")]
        record, at_org = (parse_record(found[0]) if len(found) == 1 else None), step == "org"
        if record:
            break
    if not record:
        plugin.log(LOGINFO, f"skip, no policy for {domain}")
        add_auth_result(txn.notes, "dmarc", "none", [("header.from", domain)])
        return DECLINED
    dkim_ok = [d for d in txn.notes.get("dkim_pass_domains", []) if aligned(d, domain, record["adkim"])]
    spf = txn.notes.get("dmarc_spf") or own_spf(plugin, txn)
    spf_ok = spf.get("result") == "pass" and aligned(spf.get("domain") or "", domain, record["aspf"])
    policy = record["sp"] if at_org and record.get("sp") else record["p"]
    shown = f"p={record['p']}" + (f" sp={record['sp']}" if record.get("sp") else "") + f" pct={record['pct']}"
    if dkim_ok or spf_ok:
        add_auth_result(txn.notes, "dmarc", "pass", [("header.from", domain)], comment=f"{shown} dis=none")
        txn.notes["dmarc"] = {"result": "pass", "domain": domain, "policy": policy, "disposition": "none"}
        plugin.log(LOGINFO, f"pass, {domain} aligned by {'DKIM' if dkim_ok else 'SPF'}")
        return DECLINED
    import random

    disposition = policy if random.randrange(100) < record["pct"] else MILDER[policy]
    add_auth_result(txn.notes, "dmarc", "fail", [("header.from", domain)], comment=f"{shown} dis={disposition}")
    txn.notes["dmarc"] = {"result": "fail", "domain": domain, "policy": policy, "disposition": disposition}
    plugin.log(LOGINFO, f"fail, {domain}: no aligned SPF or DKIM pass; policy {policy}, disposition {disposition}")
    if disposition != "none":
        conn.notes["karma"] = conn.notes.get("karma", 0) - 3
    if disposition == "quarantine":
        txn.notes["dmarc_quarantine"] = True
    if disposition == "reject" or disposition == "quarantine" and plugin.opts["quarantine"].lower() == "reject":
        return plugin.get_reject(f"DMARC policy of {domain} refuses this message (not authenticated)", "failed",
                                 enhanced="7.1")
    return DECLINED


def own_spf(plugin, txn):
    from qpsmtpd_stdio.spf import check_host, resolver_lookup

    conn, sender = plugin.connection, txn.sender
    if not conn.remote_ip:
        return {}
    address = f"{sender.user}@{sender.host}" if sender and sender.host else ""
    result = check_host(conn.remote_ip, address, conn.hello_host, resolver_lookup(dns.resolver(plugin)))
    return {"domain": result.domain, "result": result.result}
