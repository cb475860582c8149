"""milter - hand the session to a Sendmail milter (opendkim, clamav-milter, rspamd's proxy...) and honour its replies

Arguments: `milter NAME [HOST:]PORT | unix:PATH [timeout S] [connect_timeout S] [default_action tempfail|accept|reject]`
(qpsmtpd's first two: a name for the log, and where the milter listens;
the host defaults to 127.0.0.1). For several milters, list the plugin once
for each, in order: `milter:1 opendkim 8891`, `milter:2 clamav unix:/run/clamav/clamav-milter.ctl`.

  timeout         seconds to wait for each reply (default 30; Postfix's
                  milter_command_timeout); a milter that sends "progress"
                  gets another timeout each time, up to 300 s at end of body
  connect_timeout seconds to connect and negotiate (default 10)
  default_action  what a milter that cannot be reached, or that breaks the
                  protocol or times out, means for the session (Postfix's
                  milter_default_action): tempfail (default: 451 and the
                  client retries), accept (go on without that milter), or
                  reject (550/554)

The milter sees the session as from Sendmail or Postfix: connect (client
name and address), HELO, MAIL and each RCPT with their ESMTP arguments,
then the message's header fields (our Received on top), end of header, the
body in chunks read from the spool, and end of body. With them go the
macros milters ask for: j, _, {daemon_name}, {if_name}, {if_addr},
{client_addr}, {client_port}, {client_name}, {tls_version}, {cipher},
{cipher_bits}, {auth_type}, {auth_authen}, {mail_addr}, {rcpt_addr} and i
(the queue ID). Options and actions are negotiated (protocol version 6).

Every reply is honoured, at the stage it comes:
  accept              this milter says nothing more for this message
  continue            go on
  reject              550 at MAIL/RCPT, 554 at end of data
  tempfail            450 at MAIL/RCPT, 451 at end of data
  reply code          the milter's own code and text (4xx or 5xx) at HELO, MAIL
                      and RCPT; at end of data its text with 554 or 451
  discard             250 to the client, and the message goes nowhere
  quarantine          delivered, with the transaction note milter_quarantine
                      and an X-Quarantine field (there is no hold queue)
At end of body a milter may also add, insert and change header fields
(byte for byte, its folding kept: a signature made with c=simple still
verifies; SMFIP_HDR_LEADSPC is offered), replace the body, add and delete
recipients, and change the sender. A change that is not well formed (a
field line that is not a continuation, a control octet), more than 1000
changes or a replacement body over 64 MiB count as a broken milter. A milter is asked about one transaction at a time; RSET and a new
MAIL send it `abort`. List it early (before rcpt_ok) for its MAIL and RCPT
verdicts to come at those commands: listed after a plugin that answers OK
for them, it hears of the sender and the recipients just before DATA, and a
refusal then refuses the whole message.

Example config/plugins line (opendkim, signing mail of relay clients listed in
its InternalHosts, or authenticated users):

    milter opendkim 127.0.0.1:8891 default_action accept

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, DENY, DENYSOFT, DONE, LOGERROR, LOGINFO, LOGWARN, OK
from qpsmtpd_stdio.digits import number

REPLY_LIMIT = 300.0  # seconds in all for one stage's reply, however often the milter says "progress"
MAX_CHANGES = 1000  # changes one milter may ask for at end of body
MAX_BODY = 64 << 20  # octets of a replacement body


class Broken(Exception):
    """The milter is down, timed out, or broke the protocol."""


def register(plugin, *args):
    if len(args) < 2:
        raise ValueError("usage: milter NAME [HOST:]PORT|unix:PATH [option value ...]")
    plugin.name, where = args[0], args[1]
    if where.isascii() and where.isdigit():
        where = f"127.0.0.1:{where}"
    plugin.where = where
    plugin.opts = plugin.options({"timeout": "30", "connect_timeout": "10", "default_action": "tempfail"}, start=2)
    for name in ("timeout", "connect_timeout"):
        if not number(plugin.opts[name]):
            raise ValueError(f"{name} must be a whole number of seconds, not {plugin.opts[name]!r}")
    if plugin.opts["default_action"] not in ("tempfail", "accept", "reject"):
        raise ValueError("default_action must be tempfail, accept or reject")
    plugin.sock = None
    plugin.failed = ""           # why this milter is out of the session
    plugin.done = False          # the milter said accept: nothing more for this transaction
    plugin.session_done = False  # ... said at connect or HELO: nothing more for this session
    plugin.in_transaction = False
    plugin.told_helo, plugin.told_rcpts = False, set()  # what the milter has heard, to catch up on what it missed
    plugin.register_hook("ehlo", hook_helo)


# -- the conversation ------------------------------------------------------------------------------------

def _send(plugin, data: bytes) -> None:
    try:
        plugin.sock.sendall(data)
    except OSError as exc:
        raise Broken(f"send: {exc}") from None


def _reply(plugin, timeout: float | None = None):
    """The next reply packet; Broken on a timeout, a closed connection or a protocol error."""
    import time

    from qpsmtpd_stdio import milter

    limit = time.monotonic() + REPLY_LIMIT
    each = timeout or number(plugin.opts["timeout"])
    while True:
        while not plugin.pending:
            left = min(each, limit - time.monotonic())
            if left <= 0:
                raise Broken("timed out")
            plugin.sock.settimeout(left)
            try:
                data = plugin.sock.recv(65536)
            except OSError as exc:
                raise Broken(f"no reply: {exc}") from None
            if not data:
                raise Broken("closed the connection")
            try:
                plugin.pending.extend(plugin.reader.feed(data))
            except milter.MilterError as exc:
                raise Broken(str(exc)) from None
        reply = plugin.pending.pop(0)
        if reply.command != milter.PROGRESS:
            return reply


def _stage(plugin, command: bytes, packets: bytes, skip_flag: int, no_reply_flag: int, macros: dict | None = None):
    """Send one stage (its macros first); the verdict reply, or None if the stage is skipped or has no reply."""
    from qpsmtpd_stdio import milter

    if plugin.protocol & skip_flag:
        return None
    if macros:
        _send(plugin, milter.macro_packet(command, macros))
    _send(plugin, packets)
    if plugin.protocol & no_reply_flag:
        return None
    reply = _reply(plugin)
    if reply.command not in milter.VERDICTS:
        raise Broken(f"reply {reply.command!r} before end of body")
    return reply


def _open(plugin, txn):
    from qpsmtpd_stdio import clientsocket, milter

    conn = plugin.connection
    try:
        plugin.sock = clientsocket.connect(plugin.where, 0, number(plugin.opts["connect_timeout"]))
    except (OSError, ValueError) as exc:
        raise Broken(f"connect: {exc}") from None
    plugin.reader, plugin.pending = milter.Reader(), []
    _send(plugin, milter.optneg_packet())
    reply = _reply(plugin, number(plugin.opts["connect_timeout"]))
    if reply.command != milter.OPTNEG_REPLY:
        raise Broken(f"option negotiation answered with {reply.command!r}")
    version, actions, protocol = reply.fields
    if version < 2:
        raise Broken(f"protocol version {version}")
    plugin.actions = actions & milter.ALL_ACTIONS
    plugin.protocol = protocol & milter.MTA_PROTOCOL
    me = (plugin.config("me") or ["localhost"])[0]
    plugin.macros = {"j": me, "{daemon_name}": "qpsmtpd-stdio", "{if_name}": me, "{if_addr}": conn.local_ip}
    macros = dict(plugin.macros, _=f"{conn.remote_host or 'unknown'} [{conn.remote_ip}]",
                  **{"{client_addr}": conn.remote_ip, "{client_port}": str(conn.remote_port),
                     "{client_name}": conn.remote_host or "unknown"})
    return _stage(plugin, milter.CONNECT, milter.connect_packet(conn.remote_host or "unknown", conn.remote_ip,
                                                                 conn.remote_port),
                  milter.P_NOCONNECT, milter.P_NR_CONN, macros)


def _guard(plugin, txn, stage: str, step):
    """Run step(); turn its verdict into a hook result. A broken milter follows default_action."""
    if plugin.failed:
        return _failed_result(plugin, stage)
    if plugin.done or plugin.session_done:
        return DECLINED
    try:
        if plugin.sock is None:
            reply = _open(plugin, txn)
            if reply is not None and reply.command != b"c":
                return _verdict(plugin, txn, stage, reply)
        return _verdict(plugin, txn, stage, step())
    except Broken as exc:
        plugin.failed = str(exc)
        plugin.log(LOGERROR, f"milter {plugin.name} ({plugin.where}): {exc}; default_action {plugin.opts['default_action']}")
        _close(plugin)
        return _failed_result(plugin, stage)


def _failed_result(plugin, stage: str):
    action = plugin.opts["default_action"]
    if action == "accept" or stage in ("connect", "helo"):
        return DECLINED  # the refusal, if any, comes at MAIL: the client gets a clean reply there
    if action == "reject":
        return DENY, f"5.7.1 Rejected by milter {plugin.name}"
    return DENYSOFT, "4.7.1 Service temporarily unavailable, try again later"


def _verdict(plugin, txn, stage: str, reply):
    from qpsmtpd_stdio import milter

    if reply is None or reply.command in (milter.CONTINUE, milter.SKIP):
        return DECLINED
    if reply.command == milter.ACCEPT:
        plugin.done = True  # nothing more for this message; at connect or HELO, for the whole session
        if stage in ("connect", "helo"):
            plugin.session_done = True
            _close(plugin)
        return DECLINED
    if reply.command in (milter.SHUTDOWN, milter.CONN_FAIL):
        raise Broken("shut down")
    hard = stage == "data_post"
    if reply.command == milter.REJECT:
        plugin.log(LOGINFO, f"fail, milter {plugin.name} rejected at {stage}")
        return DENY, "5.7.1 Command rejected" if not hard else "5.7.1 Message rejected"
    if reply.command == milter.TEMPFAIL:
        plugin.log(LOGINFO, f"fail, milter {plugin.name} tempfailed at {stage}")
        return DENYSOFT, "4.7.1 Service temporarily unavailable, try again later"
    if reply.command == milter.REPLYCODE:
        text = reply.fields[0].decode("utf-8", "replace")
        from qpsmtpd_stdio.headers import unstructured

        lines = [unstructured(line[4:] if line[:3].isdigit() else line, 450) for line in text.replace("\r\n", "\n").split("\n")]
        plugin.log(LOGINFO, f"fail, milter {plugin.name} answered {text[:3]} at {stage}")
        if stage in ("helo", "mail", "rcpt"):
            return DONE, [f"{text[:3]} {lines[0]}"] + lines[1:]  # its own code; the command is refused all the same
        return (DENY if text[:1] == "5" else DENYSOFT), "\n".join(lines)
    if reply.command == milter.DISCARD:
        plugin.log(LOGINFO, f"milter {plugin.name} discards the message")
        txn.notes["milter_discard"] = plugin.name
        return DECLINED
    raise Broken(f"unexpected reply {reply.command!r}")


def _close(plugin) -> None:
    if plugin.sock is not None:
        try:
            from qpsmtpd_stdio import milter

            plugin.sock.sendall(milter.packet(milter.QUIT))
        except OSError:
            pass
        plugin.sock.close()
        plugin.sock = None


def _abort(plugin) -> None:
    """A transaction ends without end of body (RSET, a new MAIL): the milter forgets it."""
    from qpsmtpd_stdio import milter

    if plugin.sock is not None and plugin.in_transaction:
        _send(plugin, milter.packet(milter.ABORT))
    plugin.in_transaction = False


# -- the stages ------------------------------------------------------------------------------------------

def hook_connect(plugin, txn):
    return _guard(plugin, txn, "connect", lambda: None)


def hook_helo(plugin, txn, host):
    return _guard(plugin, txn, "helo", lambda: _helo(plugin, host))


def _helo(plugin, host):
    from qpsmtpd_stdio import milter

    plugin.told_helo = True
    tls = plugin.connection.tls
    macros = {"{tls_version}": getattr(tls, "version", ""), "{cipher}": getattr(tls, "cipher", ""),
              "{cipher_bits}": str(getattr(tls, "bits", ""))} if tls else {}
    return _stage(plugin, milter.HELO, milter.helo_packet(host), milter.P_NOHELO, milter.P_NR_HELO, macros)


def _mail(plugin, txn, sender, params):
    from qpsmtpd_stdio import milter

    reply = _catch_up(plugin, txn, "helo")
    if reply is not None:
        return reply
    _abort(plugin)
    plugin.in_transaction, plugin.told_rcpts = True, set()
    conn = plugin.connection
    macros = {"{mail_addr}": "" if sender.is_null else sender.address, "i": txn.id}
    if conn.auth_user:
        macros.update({"{auth_type}": conn.auth_mechanism or "", "{auth_authen}": conn.auth_user})
    args = [f"{k}={v}" if v is not None else k for k, v in (params or {}).items()]
    return _stage(plugin, milter.MAIL, milter.mail_packet(f"<{sender.address if not sender.is_null else ''}>", *args),
                  milter.P_NOMAIL, milter.P_NR_MAIL, macros)


def _rcpt(plugin, txn, rcpt, params):
    from qpsmtpd_stdio import milter

    reply = _catch_up(plugin, txn, "mail")
    if reply is not None:
        return reply
    plugin.told_rcpts.add(rcpt.address.lower())
    args = [f"{k}={v}" if v is not None else k for k, v in (params or {}).items()]
    return _stage(plugin, milter.RCPT, milter.rcpt_packet(f"<{rcpt.address}>", *args), milter.P_NORCPT,
                  milter.P_NR_RCPT, {"{rcpt_addr}": rcpt.address})


def _catch_up(plugin, txn, stage: str):
    """Send what the milter missed before `stage` (a plugin listed earlier answered OK for that hook, so ours
    never ran): HELO, then MAIL, then each recipient. A verdict other than continue is returned."""
    from qpsmtpd_stdio import milter

    steps = []
    if not plugin.told_helo and plugin.connection.hello_host:
        steps.append(lambda: _helo(plugin, plugin.connection.hello_host))
    if stage in ("rcpt", "data") and not plugin.in_transaction and txn.sender is not None:
        steps.append(lambda: _mail(plugin, txn, txn.sender, txn.mail_params))
    if stage == "data":
        for i, rcpt in enumerate(txn.recipients):
            params = txn.rcpt_params[i] if i < len(txn.rcpt_params) else {}
            steps.append(lambda rcpt=rcpt, params=params: None if rcpt.address.lower() in plugin.told_rcpts
                         else _rcpt(plugin, txn, rcpt, params))
    for step in steps:
        reply = step()
        if reply is not None and reply.command != milter.CONTINUE:
            return reply
    return None


def hook_mail(plugin, txn, sender, params):
    plugin.done = False  # an accept was for the message before this one
    return _guard(plugin, txn, "mail", lambda: _mail(plugin, txn, sender, params))


def hook_rcpt(plugin, txn, rcpt, params):
    return _guard(plugin, txn, "rcpt", lambda: _rcpt(plugin, txn, rcpt, params))


def hook_data_post(plugin, txn):
    result = _guard(plugin, txn, "data_post", lambda: _message(plugin, txn))
    plugin.in_transaction = False
    return result


def _message(plugin, txn):
    from qpsmtpd_stdio import milter

    reply = _catch_up(plugin, txn, "data")
    if reply is not None:
        return reply  # a recipient refused only now: the whole message, since the client was told 250 for it
    reply = _stage(plugin, milter.DATA, milter.packet(milter.DATA), milter.P_NODATA, milter.P_NR_DATA, {"i": txn.id})
    if reply is not None and reply.command != milter.CONTINUE:
        return reply
    if not plugin.protocol & milter.P_NOHDRS:
        leadspc = bool(plugin.protocol & milter.P_HDR_LEADSPC)
        for name, raw in txn.header.raw_fields():
            value = raw.split(b":", 1)[1] if b":" in raw else b""
            if not leadspc and value[:1] == b" ":
                value = value[1:]
            _send(plugin, milter.header_packet(name, value.replace(b"\r\n", b"\n")))
            if not plugin.protocol & milter.P_NR_HDR:
                reply = _reply(plugin)
                if reply.command != milter.CONTINUE:
                    return reply
    reply = _stage(plugin, milter.EOH, milter.packet(milter.EOH), milter.P_NOEOH, milter.P_NR_EOH)
    if reply is not None and reply.command != milter.CONTINUE:
        return reply
    if not plugin.protocol & milter.P_NOBODY:
        stream = txn.body_stream()
        while chunk := stream.read(milter.BODY_CHUNK):
            _send(plugin, milter.packet(milter.BODY, chunk))
            if not plugin.protocol & milter.P_NR_BODY:
                reply = _reply(plugin)
                if reply.command == milter.SKIP:
                    break
                if reply.command != milter.CONTINUE:
                    return reply
    _send(plugin, milter.macro_packet(milter.EOB, {"i": txn.id}))
    _send(plugin, milter.packet(milter.EOB))
    changes, body, size = [], [], 0
    while True:
        reply = _reply(plugin)
        if reply.command in milter.VERDICTS:
            break
        if reply.command == milter.REPLBODY:
            body.append(reply.fields[0])
            size += len(reply.fields[0])
        else:
            changes.append(reply)
        if len(changes) > MAX_CHANGES or size > MAX_BODY:
            raise Broken(f"more than {MAX_CHANGES} changes or a body over {MAX_BODY} octets")
    if reply.command in (milter.ACCEPT, milter.CONTINUE):
        _apply(plugin, txn, changes, b"".join(body) if body else None)
        return milter.Reply(milter.CONTINUE, b"")
    return reply


def _apply(plugin, txn, changes, body) -> None:
    """The end-of-body changes, in the order they came; Broken if one is malformed or not negotiated."""
    from qpsmtpd_stdio import milter

    allowed = {milter.ADDHEADER: milter.ADDHDRS, milter.INSHEADER: milter.ADDHDRS, milter.CHGHEADER: milter.CHGHDRS,
               milter.ADDRCPT: milter.ADDRCPT_ACT, milter.ADDRCPT_PAR: milter.ADDRCPT_PAR_ACT,
               milter.DELRCPT: milter.DELRCPT_ACT, milter.CHGFROM: milter.CHGFROM_ACT,
               milter.QUARANTINE: milter.QUARANTINE_ACT, milter.SETSYMLIST: milter.SETSYMLIST_ACT}
    if body is not None and not plugin.actions & milter.CHGBODY:
        raise Broken("replaced the body without having asked to")
    leadspc = bool(plugin.protocol & milter.P_HDR_LEADSPC)
    for change in changes:
        if not plugin.actions & allowed.get(change.command, 0):
            raise Broken(f"change {change.command!r} it did not negotiate")
        try:
            if change.command in (milter.ADDHEADER, milter.INSHEADER, milter.CHGHEADER):
                index, name, value = change.fields
                field = name + b":" + (b"" if leadspc else b" ") + value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                text = name.decode("ascii")
                if change.command == milter.ADDHEADER:
                    txn.header.insert_raw(len(txn.header), text, field)
                elif change.command == milter.INSHEADER:
                    txn.header.insert_raw(index, text, field)
                else:
                    txn.header.change_raw(text, index, field if value else None)
            elif change.command in (milter.ADDRCPT, milter.ADDRCPT_PAR):
                txn.add_recipient(change.fields[0].decode("utf-8").strip("<>"))
            elif change.command == milter.DELRCPT:
                txn.remove_recipient(change.fields[0].decode("utf-8").strip("<>"))
            elif change.command == milter.CHGFROM:
                from qpsmtpd_stdio.address import Address

                txn.sender = Address.parse(change.fields[0].decode("utf-8"))
            elif change.command == milter.QUARANTINE:
                from qpsmtpd_stdio.headers import unstructured

                reason = unstructured(change.fields[0].decode("utf-8", "replace"))
                txn.notes["milter_quarantine"] = reason
                txn.header.add("X-Quarantine", f"{plugin.name}: {reason}")
                plugin.log(LOGWARN, f"milter {plugin.name} quarantines the message: {reason}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise Broken(f"malformed change {change.command!r}: {exc}") from None
    if body is not None:
        try:
            txn.replace_body(body)
        except ValueError as exc:
            raise Broken(f"replacement body: {exc}") from None


def hook_queue(plugin, txn):
    if txn.notes.get("milter_discard") == plugin.name:
        plugin.log(LOGINFO, f"discarded, as milter {plugin.name} asked")
        return OK, "Queued (discarded)"
    return DECLINED


def hook_reset_transaction(plugin, txn):
    try:
        _abort(plugin)
    except Broken:
        _close(plugin)
    plugin.done = False
    return DECLINED


def hook_disconnect(plugin, txn):
    _close(plugin)
    return DECLINED
