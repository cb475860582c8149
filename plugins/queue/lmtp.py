"""queue/lmtp - deliver accepted mail to an LMTP server (RFC 2033): Dovecot, Cyrus, Postfix's lmtp...

Arguments: `queue/lmtp HOST:PORT | unix:/PATH [KEY VALUE ...]`

  HOST:PORT     a TCP LMTP listener (`[2001:db8::1]:24` for IPv6);
  unix:/PATH    a UNIX socket (`unix:/var/run/dovecot/lmtp`).
  timeout N     seconds for the connect and for each command and reply
                (default 30; keep it under plugin_timeout).
  lhlo NAME     our LHLO name (default: config `me`).

Config files: `me`.

An LMTP server answers the end of data once per accepted recipient, and
each of those answers is final: a recipient answered 2xx has its copy. What
the client hears, exactly:

  - at RCPT, any recipient refused: RSET, nothing is delivered to anyone,
    and the whole message gets 554 if every refusal was 5xx, else DECLINED
    (451 unless a later queue plugin takes it). A 250 always means every
    recipient was at least accepted for delivery.
  - after DATA, every recipient 2xx: 250 "Delivered to N recipients".
  - after DATA, no recipient 2xx: 554 if every answer was 5xx; else
    (a 4xx, a timeout, a lost connection) DECLINED, and the client's retry
    duplicates nothing, since no copy was acknowledged (unless the link died
    after the final dot and the server kept copies it could not confirm:
    RFC 1047's window, which no relay can close).
  - after DATA, some recipients 2xx and some not (partial success): 250, so
    that a retry never duplicates the delivered copies. The recipients that
    did not get the message are NOT bounced and NOT retried: each is logged
    at LOGERROR with the server's answer ("NOT DELIVERED to <x>: 552 ..."),
    listed in the 250 reply text, and recorded in
    txn.notes["undelivered"] as [(address, "code text"), ...] for a
    queue_post plugin (alerting, a bounce) to act on. A recipient whose
    answer never came (the connection died in the middle) counts as not
    delivered, though the server may have delivered it.

BODY=8BITMIME, SMTPUTF8 and the DSN parameters (RET, ENVID, NOTIFY, ORCPT)
are passed on only if the server advertises the extension (DSN parameters
are dropped otherwise). A transaction that needs SMTPUTF8 and a server
without it: 553 5.6.7 (RFC 6531 3.7.5), nothing delivered.

Example config/plugins line:

    queue/lmtp unix:/var/run/dovecot/lmtp

Imports at load: qpsmtpd_stdio.smtpclient.
"""

from qpsmtpd_stdio import DECLINED, DENY, DONE, LOGERROR, LOGINFO, LOGWARN, OK


def register(plugin, where=None, *args):
    import os

    from qpsmtpd_stdio.smtpclient import parse_address

    if not where:
        raise ValueError("queue/lmtp needs HOST:PORT or unix:/PATH")
    plugin.address = parse_address(where, None)
    opts = plugin.options({"timeout": "30", "lhlo": ""}, start=1)
    plugin.timeout = float(opts["timeout"])
    plugin.lhlo = opts["lhlo"] or (plugin.config("me") or [os.uname().nodename])[0]


def hook_queue(plugin, txn):
    from qpsmtpd_stdio.smtpclient import Client, DownstreamError, mail_params, rcpt_params, smtputf8_refusal

    if not txn.recipients:
        return DECLINED
    client, clean, answers = None, False, []
    try:
        client = Client.connect(plugin.address, plugin.timeout, lmtp=True)
        client.greeting()
        client.hello(plugin.lhlo)
        refusal = smtputf8_refusal(txn, client.extensions, client.name)
        if refusal:
            plugin.log(LOGINFO, f"{client.name}: {txn.id} needs SMTPUTF8, which is not offered")
            clean = True
            return DONE, str(refusal)  # 553 5.6.7 (RFC 6531 3.7.5)
        client.expect(f"MAIL FROM:{txn.sender}{mail_params(txn, client.extensions)}", "MAIL")
        refused = [(rcpt, reply) for i, rcpt in enumerate(txn.recipients)
                   for reply in [client.command(f"RCPT TO:{rcpt}{rcpt_params(txn, i, client.extensions)}", "RCPT")]
                   if not reply.ok]
        if refused:
            client.command("RSET")
            clean = True
            return _outcome(plugin, client, txn, [], refused)
        client.expect("DATA")
        client.send_message(txn.message_chunks(eol=b"\n", chunk_size=1 << 18))
        for rcpt in txn.recipients:
            answers.append((rcpt, client.reply("end of data", after_data=True)))
        clean = True
    except DownstreamError as exc:
        clean = exc.reply is not None and not exc.after_data
        where = client.name if client else "%s:%s" % plugin.address
        plugin.log(LOGWARN, f"{where} failed at {exc.stage}: {exc.detail}")
        if not answers:
            if exc.reply is not None and exc.reply.permanent and exc.stage in ("MAIL", "DATA"):
                return DENY, f"{exc.reply.enhanced or '5.0.0'} {where} said: {exc.reply}"
            return DECLINED
        # The connection died between per-recipient answers: the rest are unknown.
        answers += [(rcpt, None) for rcpt in txn.recipients[len(answers):]]
    finally:
        if client:
            client.close(quit=clean)
    delivered = [rcpt for rcpt, reply in answers if reply is not None and reply.ok]
    failed = [(rcpt, reply) for rcpt, reply in answers if reply is None or not reply.ok]
    return _outcome(plugin, client, txn, delivered, failed)


def _outcome(plugin, client, txn, delivered, failed):
    if not failed:
        plugin.log(LOGINFO, f"delivered {txn.id} to {len(delivered)} recipient(s) via {client.name}")
        return OK, f"Delivered to {len(delivered)} recipient{'s' * (len(delivered) != 1)} via {client.name}"
    if not delivered:
        lines = [f"{r.enhanced or f'{r.code // 100}.0.0' if r else '4.4.2'} {rcpt} refused by {client.name}: "
                 f"{r or 'no answer'}" for rcpt, r in failed]
        plugin.log(LOGINFO, "; ".join(lines))
        return (DENY, lines) if all(r is not None and r.permanent for _, r in failed) else DECLINED
    txn.notes["undelivered"] = [(rcpt.address, str(r) if r else "no answer") for rcpt, r in failed]
    lines = [f"{rcpt} NOT DELIVERED by {client.name}: {r or 'no answer'}" for rcpt, r in failed]
    for line in lines:
        plugin.log(LOGERROR, f"{txn.id} {line}")
    total = len(delivered) + len(failed)
    return OK, [f"Delivered to {len(delivered)} of {total} recipients via {client.name}; not to:"] + lines
