"""milter - hand the session to a Sendmail milter (opendkim, clamav-milter, rspamd's proxy...) and honour its replies

Arguments: `milter NAME [HOST:]PORT | unix:PATH [timeout S] [connect_timeout S] [default_action tempfail|accept|reject]`
(qpsmtpd's first two: a name for the log, and where the milter listens; the host defaults to 127.0.0.1).
For several milters, list the plugin once for each, in order: `milter:1 opendkim 8891`,
`milter:2 clamav unix:/run/clamav/clamav-milter.ctl`.

  timeout         seconds to wait for each reply (default 30; Postfix's milter_command_timeout); a milter
                  that sends "progress" gets another timeout each time, up to 300 s at end of body
  connect_timeout seconds to connect and negotiate (default 10)
  default_action  what a milter that cannot be reached, or that breaks the protocol or times out, means for
                  the session (Postfix's milter_default_action): tempfail (default: 451 and the client
                  retries), accept (go on without that milter), or reject (550/554)

The milter sees the session as from Sendmail or Postfix: connect (client name and address), HELO, MAIL and
each RCPT with their ESMTP arguments, then the message's header fields (our Received on top), end of header,
the body in chunks read from the spool, and end of body. With them go the macros milters ask for: j, _,
{daemon_name}, {if_name}, {if_addr}, {client_addr}, {client_port}, {client_name}, {tls_version}, {cipher},
{cipher_bits}, {auth_type}, {auth_authen}, {mail_addr}, {rcpt_addr} and i (the queue ID). Options and
actions are negotiated (protocol version 6).

Every reply is honoured, at the stage it comes:
  accept              this milter says nothing more for this message
  continue            go on
  reject              550 at MAIL/RCPT, 554 at end of data
  tempfail            450 at MAIL/RCPT, 451 at end of data
  reply code          the milter's own code and text (4xx or 5xx) at HELO, MAIL and RCPT; at end of data
                      its text with 554 or 451
  discard             250 to the client, and the message goes nowhere
  quarantine          delivered, with the transaction note milter_quarantine and an X-Quarantine field
                      (there is no hold queue)
At end of body a milter may also add, insert and change header fields (byte for byte, its folding kept: a
signature made with c=simple still verifies; SMFIP_HDR_LEADSPC is offered), replace the body, add and delete
recipients, and change the sender. A change that is not well formed (a field line that is not a
continuation, a control octet), more than 1000 changes or a replacement body over 64 MiB count as a broken
milter. A milter is asked about one transaction at a time; RSET and a new MAIL send it `abort`. List it
early (before rcpt_ok) for its MAIL and RCPT verdicts to come at those commands: listed after a plugin that
answers OK for them, it hears of the sender and the recipients just before DATA, and a refusal then refuses
the whole message.

Example config/plugins line (opendkim, signing mail of relay clients listed in its InternalHosts, or
authenticated users):

    milter opendkim 127.0.0.1:8891 default_action accept

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, DENY, DENYSOFT, DONE, LOGERROR, LOGINFO, LOGWARN, OK
from qpsmtpd_stdio.digits import number

TEMPFAIL = DENYSOFT, "4.7.1 Service temporarily unavailable, try again later"


def register(plugin, *args):
    if len(args) < 2:
        raise ValueError("usage: milter NAME [HOST:]PORT|unix:PATH [option value ...]")
    plugin.name, where = args[0], args[1]
    plugin.where = f"127.0.0.1:{where}" if where.isascii() and where.isdigit() else where
    plugin.opts = plugin.options({"timeout": "30", "connect_timeout": "10", "default_action": "tempfail"}, start=2)
    for name in ("timeout", "connect_timeout"):
        if not number(plugin.opts[name]):
            raise ValueError(f"{name} must be a whole number of seconds, not {plugin.opts[name]!r}")
    if plugin.opts["default_action"] not in ("tempfail", "accept", "reject"):
        raise ValueError("default_action must be tempfail, accept or reject")
    plugin.client = None         # the conversation (qpsmtpd_stdio.milterclient), made at the first hook
    plugin.failed = ""           # why this milter is out of the session
    plugin.done = False          # the milter said accept: nothing more for this transaction
    plugin.session_done = False  # ... said at connect or HELO: nothing more for this session
    plugin.register_hook("ehlo", hook_helo)


def _guard(plugin, txn, stage: str, step):
    """Run step(client); turn its verdict into a hook result. A broken milter follows default_action."""
    if plugin.failed:
        return _failed_result(plugin, stage)
    if plugin.done or plugin.session_done:
        return DECLINED
    from qpsmtpd_stdio import milterclient  # here, not at load: loading (and --check) imports nothing more

    if plugin.client is None:
        plugin.client = milterclient.Conversation(plugin.where, number(plugin.opts["timeout"]),
                                                  number(plugin.opts["connect_timeout"]), plugin.connection,
                                                  (plugin.config("me") or ["localhost"])[0])
    try:
        return _result(plugin, txn, stage, milterclient.verdict(plugin.client.run(step)))
    except milterclient.Broken as exc:
        plugin.failed = str(exc)
        plugin.log(LOGERROR, f"milter {plugin.name} ({plugin.where}): {exc}; default_action {plugin.opts['default_action']}")
        plugin.client.close()
        return _failed_result(plugin, stage)


def _failed_result(plugin, stage: str):
    action = plugin.opts["default_action"]
    if action == "accept" or stage in ("connect", "helo"):
        return DECLINED  # the refusal, if any, comes at MAIL: the client gets a clean reply there
    return (DENY, f"5.7.1 Rejected by milter {plugin.name}") if action == "reject" else TEMPFAIL


def _result(plugin, txn, stage: str, verdict):
    """A milterclient.Verdict as this hook's result."""
    if verdict.kind == "accept":
        plugin.done = True  # nothing more for this message; at connect or HELO, for the whole session
        if stage in ("connect", "helo"):
            plugin.session_done = True
            plugin.client.close()
    elif verdict.kind == "discard":
        plugin.log(LOGINFO, f"milter {plugin.name} discards the message")
        txn.notes["milter_discard"] = plugin.name
    if verdict.kind in ("continue", "skip", "accept", "discard"):
        return DECLINED
    said = {"reject": "rejected", "tempfail": "tempfailed"}.get(verdict.kind, f"answered {verdict.code}")
    plugin.log(LOGINFO, f"fail, milter {plugin.name} {said} at {stage}")
    if verdict.kind == "reject":
        return DENY, "5.7.1 Message rejected" if stage == "data_post" else "5.7.1 Command rejected"
    if verdict.kind == "tempfail":
        return TEMPFAIL
    if stage in ("helo", "mail", "rcpt"):  # its own code; the command is refused all the same
        return DONE, [f"{verdict.code} {verdict.lines[0]}"] + verdict.lines[1:]
    return (DENY if verdict.code[:1] == "5" else DENYSOFT), "\n".join(verdict.lines)


def _quarantine(plugin, txn, reason: str) -> None:
    txn.notes["milter_quarantine"] = reason
    txn.header.add("X-Quarantine", f"{plugin.name}: {reason}")
    plugin.log(LOGWARN, f"milter {plugin.name} quarantines the message: {reason}")


def hook_connect(plugin, txn):
    return _guard(plugin, txn, "connect", lambda client: None)


def hook_helo(plugin, txn, host):
    return _guard(plugin, txn, "helo", lambda client: client.helo(host))


def hook_mail(plugin, txn, sender, params):
    plugin.done = False  # an accept was for the message before this one
    return _guard(plugin, txn, "mail", lambda client: client.mail(txn, sender, params))


def hook_rcpt(plugin, txn, rcpt, params):
    return _guard(plugin, txn, "rcpt", lambda client: client.rcpt(txn, rcpt, params))


def hook_data_post(plugin, txn):
    result = _guard(plugin, txn, "data_post",
                    lambda client: client.message(txn, lambda reason: _quarantine(plugin, txn, reason)))
    if plugin.client is not None:
        plugin.client.in_transaction = False
    return result


def hook_queue(plugin, txn):
    if txn.notes.get("milter_discard") == plugin.name:
        plugin.log(LOGINFO, f"discarded, as milter {plugin.name} asked")
        return OK, "Queued (discarded)"
    return DECLINED


def hook_reset_transaction(plugin, txn):
    if plugin.client is not None:
        plugin.client.reset()  # abort, or close if the milter cannot be told
    plugin.done = False
    return DECLINED


def hook_disconnect(plugin, txn):
    if plugin.client is not None:
        plugin.client.close()
    return DECLINED
