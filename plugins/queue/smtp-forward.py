"""queue/smtp-forward - relay accepted mail to a smarthost by SMTP

Arguments: `queue/smtp-forward HOST [PORT] [xclient] [KEY VALUE ...]`

  HOST      the smarthost; several, comma-separated, are tried in order
            (`mx1.example,[2001:db8::25]:2525,10.2.2.2:9025`).
  PORT      the default port (25).
  xclient   as qpsmtpd: send XCLIENT with the original client, so that the
            smarthost's policy and logs see it; a host without XCLIENT fails.
            Without it, XFORWARD (logging only) is sent where advertised.
  timeout N       seconds for the connect and each command (30); keep hosts x
                  timeout under plugin_timeout.
  tls MODE        `may` (default: STARTTLS when offered, unchecked; a failed
                  handshake is retried in clear), `encrypt`, `verify`
                  (certificate and name checked), `none`.
  tls_ca FILE     CA certificates for `verify` (default: the system's).
  helo NAME       our EHLO name (default: config `me`).
  xforward no     never send XFORWARD.

BODY=8BITMIME, SMTPUTF8 and DSN parameters go only to a host that advertises
them (DSN's are dropped otherwise, as Postfix does); a message that needs
SMTPUTF8 gets 553 5.6.7 if no host offers it (RFC 6531 3.7.5).

What the client hears: 250 with the smarthost's reply once every recipient
was taken; 554 for a 5xx to MAIL, RCPT, DATA or the end of data (a recipient
refused while others were taken aborts the whole transaction: 250 always
means every recipient got it); on a refused connection, timeout, 4xx or lost
link the next host is tried while nothing was sent, then DECLINED (451 unless
a later queue plugin takes it). Once the body was on its way, a failure is
never retried elsewhere and never answered 5xx: 451.

Example config/plugins line:

    queue/smtp-forward 10.2.2.2 9025

Imports at load: qpsmtpd_stdio.smtpclient.
"""

from qpsmtpd_stdio import DECLINED, DENY, DONE, LOGERROR, LOGINFO, LOGWARN, OK
from qpsmtpd_stdio.digits import number

_TLS_MODES = ("none", "may", "encrypt", "verify")
_FINAL_STAGES = ("MAIL", "RCPT", "DATA", "end of data")  # where a 5xx refuses the message itself


def register(plugin, hosts=None, *args):
    import os

    from qpsmtpd_stdio.smtpclient import parse_address

    if not hosts:
        raise ValueError("queue/smtp-forward needs a HOST argument")
    start = 1 + (bool(args) and number(args[0], 65535) is not None)
    port = number(args[0]) if start == 2 else 25
    plugin.xclient = len(args) >= start and args[start - 1].lower() == "xclient"
    opts = plugin.options({"timeout": "30", "tls": "may", "tls_ca": "", "xforward": "yes", "helo": ""},
                          start=start + plugin.xclient)
    plugin.hosts = [parse_address(h, port) for h in hosts.split(",") if h]
    plugin.timeout = float(opts["timeout"])
    plugin.tls = opts["tls"].lower()
    if plugin.tls not in _TLS_MODES:
        raise ValueError(f"queue/smtp-forward: tls {plugin.tls!r} is not one of {', '.join(_TLS_MODES)}")
    plugin.tls_ca = opts["tls_ca"] or None
    plugin.xforward = opts["xforward"].lower() not in ("no", "0", "off")
    plugin.helo = opts["helo"] or (plugin.config("me") or [os.uname().nodename])[0]


def hook_queue(plugin, txn):
    from qpsmtpd_stdio.smtpclient import Client, DownstreamError

    if not txn.recipients:
        return DECLINED
    utf8_refusal = None  # a host without SMTPUTF8, for a transaction that needs it
    temp_failed = False  # a host that might have taken it failed
    for address in plugin.hosts:
        tls = plugin.tls
        while True:
            client, clean = None, False
            try:
                client = Client.connect(address, plugin.timeout)
                result = _relay(plugin, txn, client, tls)
                clean = True
                return result
            except DownstreamError as exc:
                where = client.name if client else "%s:%s" % address
                clean = exc.reply is not None and not exc.after_data
                if exc.stage == "TLS" and tls == "may":
                    plugin.log(LOGWARN, f"{where}: STARTTLS failed ({exc.detail}); retrying in clear text")
                    tls = "none"
                    continue
                if exc.stage == "SMTPUTF8":
                    plugin.log(LOGINFO, f"{where}: {txn.id} needs SMTPUTF8, which is not offered")
                    utf8_refusal = exc.reply
                    break
                if exc.permanent and exc.stage in _FINAL_STAGES:
                    plugin.log(LOGINFO, f"{where} refused {txn.id} at {exc.stage}: {exc.detail}")
                    return DENY, (exc.reply.lines if exc.stage == "RCPT"
                                  else [f"{exc.reply.enhanced or '5.0.0'} {where} said: {exc.reply}"])
                plugin.log(LOGERROR if exc.after_data else LOGWARN, f"{where} failed at {exc.stage}: {exc.detail}")
                if exc.after_data:
                    return DECLINED  # the smarthost may hold a copy: no other host, no 5xx
                temp_failed = True
                break
            finally:
                if client:
                    client.close(quit=clean)
    if utf8_refusal is not None and not temp_failed:
        return DONE, str(utf8_refusal)  # 553 5.6.7 (RFC 6531 3.7.5)
    return DECLINED


def _relay(plugin, txn, client, tls):
    from qpsmtpd_stdio.smtpclient import (DownstreamError, Reply, client_attributes, mail_params, rcpt_params,
                                          smtputf8_refusal, tls_context)

    client.greeting()
    client.hello(plugin.helo)
    if tls != "none":
        if "STARTTLS" not in client.extensions:
            if tls != "may":
                raise DownstreamError("TLS", detail="STARTTLS is not offered")
        else:
            try:
                client.starttls(tls_context(tls == "verify", plugin.tls_ca), client.name.rsplit(":", 1)[0].strip("[]"))
            except DownstreamError as exc:
                raise DownstreamError("TLS", detail=exc.detail) from None
            client.hello(plugin.helo)
    conn = plugin.connection
    if plugin.xclient:
        if "XCLIENT" not in client.extensions:
            raise DownstreamError("XCLIENT", detail="XCLIENT is not advertised")
        wanted = set(client.extensions["XCLIENT"].upper().split())
        attrs = client_attributes(conn, wanted, LOGIN=conn.auth_user or "[UNAVAILABLE]")
        client.expect("XCLIENT " + " ".join(attrs))
        client.hello(conn.hello_host or plugin.helo)  # as the client greeted us, as qpsmtpd does
    elif plugin.xforward and "XFORWARD" in client.extensions:
        wanted = set(client.extensions["XFORWARD"].upper().split())
        attrs = client_attributes(conn, wanted, IDENT=txn.id, SOURCE="REMOTE")
        if attrs and not client.command("XFORWARD " + " ".join(attrs)).ok:
            plugin.log(LOGWARN, f"{client.name} refused XFORWARD; going on without it")
    refusal = smtputf8_refusal(txn, client.extensions, client.name)
    if refusal:
        raise DownstreamError("SMTPUTF8", refusal)
    client.expect(f"MAIL FROM:{txn.sender}{mail_params(txn, client.extensions)}", "MAIL")
    refused = []
    for i, rcpt in enumerate(txn.recipients):
        reply = client.command(f"RCPT TO:{rcpt}{rcpt_params(txn, i, client.extensions)}", "RCPT")
        if not reply.ok:
            refused.append((rcpt, reply))
    if refused:  # all or nothing: a 250 must mean every recipient got it
        client.command("RSET")
        code = min(r.code for _, r in refused if r.code < 500) if any(r.code < 500 for _, r in refused) else 554
        lines = [f"{r.enhanced or f'{r.code // 100}.0.0'} {rcpt} refused by {client.name}: {r}" for rcpt, r in refused]
        raise DownstreamError("RCPT", Reply(code, lines))
    client.expect("DATA")
    client.send_message(txn.message_chunks(eol=b"\n", chunk_size=1 << 18))
    reply = client.reply("end of data", after_data=True)
    if not reply.ok:
        raise DownstreamError("end of data", reply)  # refused: it holds no copy
    plugin.log(LOGINFO, f"relayed {txn.id} to {client.name}{' with TLS' if client.tls else ''}: {reply}")
    return OK, f"Queued by {client.name}: {reply.text}"
