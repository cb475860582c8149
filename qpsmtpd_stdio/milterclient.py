"""One milter conversation, MTA side, for plugins/milter.py: what smtpclient.py is to SMTP.

milter.py encodes and decodes the packets and does no I/O; this module owns
the socket. It connects and negotiates, sends each stage with the macros
milters read, waits for replies under the timeouts, turns a stage's reply
into a `Verdict`, and checks and bounds the changes a milter asks for at end
of body as it applies them. Whatever goes wrong with the milter (down,
silent, a protocol error, a malformed change) is `Broken`: the plugin then
follows its default_action.
"""

import time

from . import clientsocket, milter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .address import Address
    from .connection import Connection
    from .transaction import Transaction

REPLY_LIMIT = 300.0  # seconds in all for one stage's reply, however often the milter says "progress"
MAX_CHANGES = 1000  # changes one milter may ask for at end of body
MAX_BODY = 64 << 20  # octets of a replacement body

# The action a milter must have negotiated for each change it may ask for at end of body.
NEEDS = {milter.ADDHEADER: milter.ADDHDRS, milter.INSHEADER: milter.ADDHDRS, milter.CHGHEADER: milter.CHGHDRS,
         milter.ADDRCPT: milter.ADDRCPT_ACT, milter.ADDRCPT_PAR: milter.ADDRCPT_PAR_ACT,
         milter.DELRCPT: milter.DELRCPT_ACT, milter.CHGFROM: milter.CHGFROM_ACT,
         milter.QUARANTINE: milter.QUARANTINE_ACT, milter.SETSYMLIST: milter.SETSYMLIST_ACT}


class Broken(Exception):
    """The milter is down, timed out, or broke the protocol."""


class Verdict:
    """What a stage's reply means: `kind` is continue, skip, accept, reject, tempfail, discard or reply; for
    reply, `code` is the milter's own (4xx or 5xx) and `lines` its text, each line safe to send to a client."""

    __slots__ = ("kind", "code", "lines")

    def __init__(self, kind: str, code: str = "", lines: list[str] | None = None) -> None:
        self.kind, self.code, self.lines = kind, code, lines or []

    def __repr__(self) -> str:
        return f"Verdict({self.kind!r}, {self.code!r}, {self.lines!r})"


KINDS = {milter.CONTINUE: "continue", milter.SKIP: "skip", milter.ACCEPT: "accept", milter.REJECT: "reject",
         milter.TEMPFAIL: "tempfail", milter.DISCARD: "discard"}


def verdict(reply: "milter.Reply | None") -> Verdict:
    """The verdict in a stage's reply (None: the stage was skipped or has no reply, so go on)."""
    if reply is None:
        return Verdict("continue")
    if reply.command in KINDS:
        return Verdict(KINDS[reply.command])
    if reply.command in (milter.SHUTDOWN, milter.CONN_FAIL):
        raise Broken("shut down")
    if reply.command == milter.REPLYCODE:
        from .headers import unstructured

        text = reply.fields[0].decode("utf-8", "replace")
        # Each line's own code is dropped: the first line gets the milter's code back, a client reply the stage's.
        lines = [unstructured(line[4:] if line[:3].isdigit() else line, 450)
                 for line in text.replace("\r\n", "\n").split("\n")]
        return Verdict("reply", text[:3], lines)
    raise Broken(f"unexpected reply {reply.command!r}")


def _esmtp_args(params: dict | None) -> list[str]:
    return [f"{k}={v}" if v is not None else k for k, v in (params or {}).items()]


class Conversation:
    """One milter for one session. What it has been told (HELO, the transaction, the recipients) is noted, so
    that a stage a plugin listed earlier answered for is caught up on later; close() forgets them, so a
    milter reopened later hears the session again from HELO."""

    def __init__(self, where: str, timeout: int, connect_timeout: int, connection: "Connection", me: str) -> None:
        self.where, self.timeout, self.connect_timeout = where, timeout, connect_timeout
        self.connection, self.me = connection, me  # me: our host name, for the j and {if_name} macros
        self.sock = None
        self.reader, self.pending = milter.Reader(), []
        self.actions = self.protocol = 0  # what was negotiated
        self.in_transaction = False
        self.told_helo, self.told_rcpts = False, set()

    # -- the wire --------------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise Broken(f"send: {exc}") from None

    def reply(self, timeout: float | None = None) -> milter.Reply:
        """The next reply packet; Broken on a timeout, a closed connection or a protocol error."""
        limit = time.monotonic() + REPLY_LIMIT  # "progress" earns another timeout, but not past this
        each = timeout or self.timeout
        while True:
            while not self.pending:
                left = min(each, limit - time.monotonic())
                if left <= 0:
                    raise Broken("timed out")
                self.sock.settimeout(left)
                try:
                    data = self.sock.recv(65536)
                except OSError as exc:
                    raise Broken(f"no reply: {exc}") from None
                if not data:
                    raise Broken("closed the connection")
                try:
                    self.pending.extend(self.reader.feed(data))
                except milter.MilterError as exc:
                    raise Broken(str(exc)) from None
            reply = self.pending.pop(0)
            if reply.command != milter.PROGRESS:
                return reply

    def stage(self, command: bytes, packets: bytes, skip_flag: int, no_reply_flag: int,
              macros: dict | None = None) -> "milter.Reply | None":
        """Send one stage (its macros first); the verdict reply, or None if the stage is skipped or has no reply."""
        if self.protocol & skip_flag:
            return None
        if macros:
            self.send(milter.macro_packet(command, macros))
        self.send(packets)
        if self.protocol & no_reply_flag:
            return None
        reply = self.reply()
        if reply.command not in milter.VERDICTS:
            raise Broken(f"reply {reply.command!r} before end of body")
        return reply

    def run(self, step: "Callable[[Conversation], milter.Reply | None]") -> "milter.Reply | None":
        """step(self)'s reply, opened first if need be: then a connect reply other than continue is the answer."""
        if self.sock is None:
            reply = self.open()
            if reply is not None and reply.command != milter.CONTINUE:
                return reply
        return step(self)

    def open(self) -> "milter.Reply | None":
        """Connect, negotiate, and send the connect stage: its reply."""
        conn, me = self.connection, self.me
        try:
            self.sock = clientsocket.connect(self.where, 0, self.connect_timeout)
        except (OSError, ValueError) as exc:
            raise Broken(f"connect: {exc}") from None
        self.reader, self.pending = milter.Reader(), []
        self.send(milter.optneg_packet())
        reply = self.reply(self.connect_timeout)
        if reply.command != milter.OPTNEG_REPLY:
            raise Broken(f"option negotiation answered with {reply.command!r}")
        version, actions, protocol = reply.fields
        if version < 2:
            raise Broken(f"protocol version {version}")
        self.actions = actions & milter.ALL_ACTIONS  # never more than we offered
        self.protocol = protocol & milter.MTA_PROTOCOL
        host = conn.remote_host or "unknown"
        macros = {"j": me, "{daemon_name}": "qpsmtpd-stdio", "{if_name}": me, "{if_addr}": conn.local_ip,
                  "_": f"{host} [{conn.remote_ip}]", "{client_addr}": conn.remote_ip,
                  "{client_port}": str(conn.remote_port), "{client_name}": host}
        return self.stage(milter.CONNECT, milter.connect_packet(host, conn.remote_ip, conn.remote_port),
                          milter.P_NOCONNECT, milter.P_NR_CONN, macros)

    def abort(self) -> None:
        """A transaction ends without end of body (RSET, a new MAIL): the milter forgets it."""
        if self.sock is not None and self.in_transaction:
            self.send(milter.packet(milter.ABORT))
        self.in_transaction = False

    def reset(self) -> None:
        """abort(), or close() if the milter cannot be told."""
        try:
            self.abort()
        except Broken:
            self.close()

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.sendall(milter.packet(milter.QUIT))
            except OSError:
                pass  # going anyway
            self.sock.close()
            self.sock = None
        # A milter reopened later is a new conversation: it must hear HELO again, and no ABORT first.
        self.told_helo, self.in_transaction, self.told_rcpts = False, False, set()

    # -- the stages ------------------------------------------------------------------------------------

    def helo(self, host: str) -> "milter.Reply | None":
        self.told_helo = True
        tls = self.connection.tls
        macros = {"{tls_version}": getattr(tls, "version", ""), "{cipher}": getattr(tls, "cipher", ""),
                  "{cipher_bits}": str(getattr(tls, "bits", ""))} if tls else {}
        return self.stage(milter.HELO, milter.helo_packet(host), milter.P_NOHELO, milter.P_NR_HELO, macros)

    def mail(self, txn: "Transaction", sender: "Address", params: dict | None) -> "milter.Reply | None":
        reply = self.catch_up(txn, "helo")
        if reply is not None:
            return reply
        self.abort()
        self.in_transaction, self.told_rcpts = True, set()
        conn = self.connection
        macros = {"{mail_addr}": "" if sender.is_null else sender.address, "i": txn.id}
        if conn.auth_user:
            macros.update({"{auth_type}": conn.auth_mechanism or "", "{auth_authen}": conn.auth_user})
        path = f"<{sender.address if not sender.is_null else ''}>"
        return self.stage(milter.MAIL, milter.mail_packet(path, *_esmtp_args(params)), milter.P_NOMAIL,
                          milter.P_NR_MAIL, macros)

    def rcpt(self, txn: "Transaction", rcpt: "Address", params: dict | None) -> "milter.Reply | None":
        reply = self.catch_up(txn, "mail")
        if reply is not None:
            return reply
        self.told_rcpts.add(rcpt.address.lower())
        return self.stage(milter.RCPT, milter.rcpt_packet(f"<{rcpt.address}>", *_esmtp_args(params)),
                          milter.P_NORCPT, milter.P_NR_RCPT, {"{rcpt_addr}": rcpt.address})

    def catch_up(self, txn: "Transaction", stage: str) -> "milter.Reply | None":
        """Send what the milter missed before `stage` (a plugin listed earlier answered OK for that hook, so the
        milter's never ran): HELO, then MAIL, then each recipient. A reply other than continue is returned."""
        steps = []
        if not self.told_helo and self.connection.hello_host:
            steps.append(lambda: self.helo(self.connection.hello_host))
        if stage in ("rcpt", "data") and not self.in_transaction and txn.sender is not None:
            steps.append(lambda: self.mail(txn, txn.sender, txn.mail_params))
        if stage == "data":
            for i, rcpt in enumerate(txn.recipients):
                params = txn.rcpt_params[i] if i < len(txn.rcpt_params) else {}
                steps.append(lambda rcpt=rcpt, params=params: None if rcpt.address.lower() in self.told_rcpts
                             else self.rcpt(txn, rcpt, params))
        for step in steps:
            reply = step()
            if reply is not None and reply.command != milter.CONTINUE:
                return reply
        return None

    def message(self, txn: "Transaction", quarantine: "Callable[[str], None]") -> "milter.Reply | None":
        """DATA, the header fields, end of header, the body and end of body; the changes asked for are applied
        (`quarantine(reason)` for a quarantine) unless the verdict refuses the message. The verdict reply."""
        reply = self.catch_up(txn, "data")
        if reply is not None:
            return reply  # a recipient refused only now: the whole message, since the client was told 250 for it
        reply = self.stage(milter.DATA, milter.packet(milter.DATA), milter.P_NODATA, milter.P_NR_DATA, {"i": txn.id})
        if reply is not None and reply.command != milter.CONTINUE:
            return reply
        if not self.protocol & milter.P_NOHDRS:
            leadspc = bool(self.protocol & milter.P_HDR_LEADSPC)
            for name, raw in txn.header.raw_fields():
                value = raw.split(b":", 1)[1] if b":" in raw else b""
                if not leadspc and value[:1] == b" ":
                    value = value[1:]
                self.send(milter.header_packet(name, value.replace(b"\r\n", b"\n")))
                if not self.protocol & milter.P_NR_HDR:
                    reply = self.reply()
                    if reply.command != milter.CONTINUE:
                        return reply
        reply = self.stage(milter.EOH, milter.packet(milter.EOH), milter.P_NOEOH, milter.P_NR_EOH)
        if reply is not None and reply.command != milter.CONTINUE:
            return reply
        if not self.protocol & milter.P_NOBODY:
            stream = txn.body_stream()
            while chunk := stream.read(milter.BODY_CHUNK):
                self.send(milter.packet(milter.BODY, chunk))
                if not self.protocol & milter.P_NR_BODY:
                    reply = self.reply()
                    if reply.command == milter.SKIP:
                        break
                    if reply.command != milter.CONTINUE:
                        return reply
        self.send(milter.macro_packet(milter.EOB, {"i": txn.id}))
        self.send(milter.packet(milter.EOB))
        reply, changes, body = self.end_of_body()
        if reply.command in (milter.ACCEPT, milter.CONTINUE):
            self.apply(txn, changes, body, quarantine)
            return milter.Reply(milter.CONTINUE, b"")
        return reply

    # -- end of body -----------------------------------------------------------------------------------

    def end_of_body(self) -> "tuple[milter.Reply, list[milter.Reply], bytes | None]":
        """Read to the verdict: (it, the changes asked for before it, the replacement body or None), bounded."""
        changes, body, size = [], [], 0
        while True:
            reply = self.reply()
            if reply.command in milter.VERDICTS:
                return reply, changes, b"".join(body) if body else None
            if reply.command == milter.REPLBODY:
                body.append(reply.fields[0])
                size += len(reply.fields[0])
            else:
                changes.append(reply)
            # Checked as they come: a flood is refused before it fills memory.
            if len(changes) > MAX_CHANGES or size > MAX_BODY:
                raise Broken(f"more than {MAX_CHANGES} changes or a body over {MAX_BODY} octets")

    def apply(self, txn: "Transaction", changes: "list[milter.Reply]", body: bytes | None,
              quarantine: "Callable[[str], None]") -> None:
        """The end-of-body changes, in the order they came; Broken if one is malformed or not negotiated."""
        if body is not None and not self.actions & milter.CHGBODY:
            raise Broken("replaced the body without having asked to")
        leadspc = bool(self.protocol & milter.P_HDR_LEADSPC)
        for change in changes:
            if not self.actions & NEEDS.get(change.command, 0):
                raise Broken(f"change {change.command!r} it did not negotiate")
            try:
                if change.command in (milter.ADDHEADER, milter.INSHEADER, milter.CHGHEADER):
                    index, name, value = change.fields
                    # Byte for byte, its folding kept (a c=simple signature must still verify); the header
                    # methods refuse anything that is not one well-formed field.
                    crlf = value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                    field = name + b":" + (b"" if leadspc else b" ") + crlf
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
                    from .address import Address

                    txn.sender = Address.parse(change.fields[0].decode("utf-8"))
                elif change.command == milter.QUARANTINE:
                    from .headers import unstructured

                    quarantine(unstructured(change.fields[0].decode("utf-8", "replace")))
            except (ValueError, UnicodeDecodeError) as exc:
                raise Broken(f"malformed change {change.command!r}: {exc}") from None
        if body is not None:
            try:
                txn.replace_body(body)
            except ValueError as exc:
                raise Broken(f"replacement body: {exc}") from None
