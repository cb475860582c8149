"""One SMTP session: drives the protocol core over the transport and asks plugins for every decision.

The mapping from a hook's result to the reply follows qpsmtpd (see README
"Hooks"), with two deliberate changes: a plugin that fails answers 4xx
instead of being skipped, and every reply carries an RFC 3463 enhanced code.

TLS and AUTH: a plugin that sets `plugin.tls_context` (a callable returning
an ssl.SSLContext, called only when TLS starts) makes STARTTLS and SMTPS
work; plugins with `auth` / `auth_<mech>` hooks make AUTH work (auth.py holds
the SASL mechanisms and the policy).
"""

from __future__ import annotations

import os
import time

from . import protocol as p
from .address import Address, AddressError, check_dsn_param, parse_params, parse_path, split_mail_arg
from .constants import (
    DECLINED,
    DENY,
    DENY_DISCONNECT,
    DENYSOFT,
    DENYSOFT_DISCONNECT,
    DONE,
    LOGDEBUG,
    LOGERROR,
    LOGINFO,
    LOGNOTICE,
    LOGWARN,
    OK,
    SOFTWARE,
    VERSION,
)
from .headers import HeaderLimit, Headers, split_header_block
from .protocol import Reply
from .received import received_lines
from .spool import Spool
from .transaction import Transaction
from .transport import ClientGone, Timeout


class Terminate(BaseException):
    """A signal (SIGTERM, SIGHUP, SIGALRM outside a hook) ends the session."""


class Disconnect(Exception):
    """The session is over (421, 221, a *_DISCONNECT result)."""


# Hooks that make AUTH available (auth.available() says which mechanisms); listed here so
# that a session without auth plugins never imports auth.py.
_AUTH_HOOKS = ("auth", "auth_plain", "auth_login", "auth_cram_md5")


class Session:
    def __init__(self, config, log, transport, connection, host, smtps: bool = False) -> None:
        self.config = config
        self.log = log
        self.transport = transport
        self.connection = connection
        self.host = host
        self.me = config.get_one("me") or _hostname()
        self.timeout = config.get_int("timeoutsmtpd") if config.get("timeoutsmtpd") else config.get_int("timeout")
        self.deadline = time.monotonic() + config.get_int("session_timeout")
        self.databytes = config.get_int("databytes")
        self.max_recipients = config.get_int("max_recipients")
        self.max_messages = config.get_int("max_messages")
        self.transactions = 0  # MAIL commands accepted (LIMITS MAILMAX)
        self.max_errors = config.get_int("max_errors")
        self.bare_newline = (config.get_one("bare_newline") or "reject").lower()
        self.proto = p.ServerConnection(config.get_int("max_command_length"), config.get_int("max_line_length"))
        self.txn = Transaction()
        self.errors = 0
        self.messages = 0
        self.last_result = ""
        self.spool: Spool | None = None
        self.too_big = False
        self.spool_error = False  # a spool write failed (disk full): this message gets 451
        self._xclient_trusted: bool | None = None  # decided once, from the address before any XCLIENT
        self.record = None  # sessionrecord.SessionRecord, when config `session_record` names a file
        self.chunk_refusal = None  # BDAT: (reply, result) of a data hook that refused the first chunk
        self.smtps = smtps         # TLS before the greeting (--smtps)
        self.sasl = None           # the auth.Exchange under way
        self.auth_failures = 0
        self._auth_policy = None
        host.input_probe = lambda wait: self.proto.buffered > 0 or transport.readable(wait)

    # The loop ----------------------------------------------------------
    def run(self) -> None:
        self.start_record()
        try:
            self.proxy_header()
            if self.implicit_tls():
                self.smtps_handshake()
            self.greet()
            while self.proto.state != p.CLOSED:
                event = self.proto.next_event()
                if event is p.NEED_DATA:
                    self.proto.receive_data(self.read())
                else:
                    self.handle(event)
        except Disconnect:
            pass
        except Timeout:
            self.log(LOGNOTICE, f"timeout after {self.timeout}s of silence from {self.connection.remote_label}")
            self.fail(Reply(421, f"{self.me} Error: timeout exceeded", "4.4.2"))
        except ClientGone as exc:
            self.log(LOGINFO, f"client went away: {exc}")
        except Terminate as exc:
            self.log(LOGNOTICE, f"terminated by {exc}")
            self.fail(Reply(421, f"{self.me} Service shutting down, closing transmission channel", "4.3.2"))
        except Exception as exc:
            from .pluginhost import format_traceback

            self.log(LOGERROR, f"internal error: {format_traceback(exc)}")
            self.fail(Reply(421, f"{self.me} Internal error - try again later", "4.3.0"))
        finally:
            self.discard_spool()
            self.host.run_all("disconnect", self.txn)
            self.host.run_all("post_connection", self.txn)
            self.log_summary()
            self.write_record()

    def start_record(self) -> None:
        """With config `session_record` or `prometheus_textfile`, note every hook's verdict for the session's end."""
        path = self.config.get_one("session_record")
        prom = self.config.get_one("prometheus_textfile")
        if not path and not prom:
            return
        from .sessionrecord import SessionRecord

        if path and path != "syslog":  # `syslog`: the line goes to syslog (facility mail) instead of a file
            path = os.path.join(self.config.directory, path)
        self.record = record = SessionRecord(path,
                                             prom and os.path.join(self.config.directory, prom))
        run = self.host.run

        def run_and_record(hook, txn, *args):
            result = run(hook, txn, *args)
            record.verdict(hook, result)
            return result

        self.host.run = run_and_record

    def write_record(self) -> None:
        if self.record is None:
            return
        try:
            self.record.write(self.connection, self.last_result, self.errors)
        except Exception as exc:  # monitoring must never break a session
            self.log(LOGERROR, f"cannot write the session record: {exc}")
        if self.record.prometheus:
            from .sessionrecord import write_prometheus

            try:
                write_prometheus(self.record, self.last_result)
            except Exception as exc:
                self.log(LOGERROR, f"cannot update the Prometheus textfile: {exc}")

    def read(self) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.log(LOGNOTICE, "session time limit reached")
            self.fail(Reply(421, f"{self.me} Error: session time limit exceeded", "4.4.2"))
            raise Disconnect()
        wait = min(self.timeout, remaining)
        try:
            data = self.transport.read(wait)
        except Timeout:
            if wait >= self.timeout:
                raise
            self.log(LOGNOTICE, "session time limit reached")
            self.fail(Reply(421, f"{self.me} Error: session time limit exceeded", "4.4.2"))
            raise Disconnect() from None
        if self.log.level >= LOGDEBUG and data and self.proto.state not in (p.DATA, p.BDAT):
            shown = data[:512]
            if self.proto.state == p.SASL or b"AUTH " in shown.upper():
                from .auth import mask

                shown = mask(shown, self.proto.state == p.SASL)  # never a password in the log
            self.log(LOGDEBUG, f"<- {shown!r}")
        return data

    def fail(self, reply: Reply) -> None:
        """Send a last reply if the client can still get one."""
        if self.proto.state == p.CLOSED:
            return
        try:
            self.transport.write(self.proto.send(reply))
            self.transport.flush()
        except (ClientGone, p.ProtocolError):
            pass
        self.proto.state = p.CLOSED

    def respond(self, reply: Reply) -> None:
        self.transport.write(self.proto.send(reply))
        if reply.code >= 400:
            self.last_result = f"{reply.code} {reply.text}"
        if self.proto.state == p.CLOSED:
            self.transport.flush()
            raise Disconnect()

    def protocol_error(self, reply: Reply) -> None:
        """A syntax or sequence error: counted, and past max_errors the session ends."""
        self.errors += 1
        if self.max_errors and self.errors >= self.max_errors:
            self.log(LOGNOTICE, f"{self.errors} errors; disconnecting")
            self.respond(Reply(421, f"{self.me} Error: too many errors", "4.7.0"))
        self.respond(reply)

    def handle(self, event) -> None:
        if isinstance(event, p.Command):
            handler = getattr(self, "cmd_" + event.verb.lower(), None) if event.verb in p.KNOWN_VERBS else None
            if handler is None:
                self.unrecognized(event)
            else:
                handler(event.arg)
        elif isinstance(event, p.AuthResponse):
            if self.sasl is None:
                # A plugin answered AUTH itself (unrecognized_command): the exchange's lines go to it too.
                verb, _, arg = event.line.partition(" ")
                self.unrecognized(p.Command(verb.upper(), arg))
            else:
                self.sasl_step(self.sasl.respond(event.line))
        elif isinstance(event, p.MessageData):
            self.spool_data(event.data)
        elif isinstance(event, p.EndOfMessage):
            self.end_of_data(event.stats)
        elif isinstance(event, p.ChunkStart):
            self.start_chunk(event)
        elif isinstance(event, p.EndOfChunk):
            self.end_of_chunk(event)
        elif isinstance(event, p.OutOfSequence) and event.command.verb == "BDAT":
            # Chunks pipelined after a refused one (RFC 3030 2): refused, not counted as errors.
            self.respond(event.reply)
        elif isinstance(event, p.BadChunk):
            self.reset_transaction()  # the protocol closed the transaction too
            self.protocol_error(event.reply)
        elif isinstance(event, (p.OutOfSequence, p.BadLine)):
            self.protocol_error(event.reply)
            if self.proto.state != p.SASL:
                self.sasl = None  # a bad line inside an AUTH exchange ends it
        elif isinstance(event, p.ConnectionClosed):
            if event.in_data:
                self.log(LOGNOTICE, "client disconnected during DATA; nothing queued")
                self.last_result = "disconnected during DATA"
            self.proto.state = p.CLOSED

    def answer(self, result, replies: dict, default: Reply) -> bool:
        """Send the reply that `result` stands for. True if the command succeeded.

        `replies` maps DENY, DENYSOFT... to (code, enhanced, default text).
        A plugin's own text replaces the default text; DONE with text that
        starts with a reply code is sent as it is.
        """
        code = result.code
        if code in (OK, DECLINED) or (code == DONE and not result.lines):
            self.respond(default)
            return True
        if code == DONE:
            first = result.lines[0]
            try:
                reply_code = int(first[:3])
            except ValueError:
                reply_code = default.code
            lines = [first[4:]] + result.lines[1:] if first[:3].isdigit() else result.lines
            self.respond(Reply(reply_code, lines, _default_enhanced(reply_code)))
            return 200 <= reply_code < 400
        reply_code, enhanced, text = replies[code]
        self.respond_deny(Reply(reply_code, result.lines or [text], enhanced), code, result)
        return False

    def respond_deny(self, reply: Reply, code: int, result) -> None:
        if result.plugin:
            self.log(LOGINFO, f"{reply.code} {reply.text}", result.plugin)
        if code in (DENY_DISCONNECT, DENYSOFT_DISCONNECT) and reply.code != 421:
            self.respond(reply)
            self.transport.flush()
            self.proto.state = p.CLOSED
            raise Disconnect()
        self.respond(reply)

    # Connection ---------------------------------------------------------
    def proxy_header(self) -> None:
        """From a peer in config `proxy_clients`, read the PROXY header (v1 or v2) before the greeting.

        Only a listed peer is waited for: anyone else gets the greeting at once,
        and a PROXY line from them is an unknown command. A listed peer must send
        a valid header; without one the connection closes with no reply (the
        HAProxy spec: never guess).
        """
        entries = self.config.get("proxy_clients")
        if not entries:
            return
        from . import proxyproto

        conn = self.connection
        if not proxyproto.trusted(conn.remote_ip, entries):
            return
        received = b""
        while True:
            try:
                parsed = proxyproto.parse(received)
            except proxyproto.ProxyError as exc:
                self.log(LOGNOTICE, f"bad PROXY header from {conn.remote_label}: {exc}; closing")
                self.proto.state = p.CLOSED
                raise Disconnect() from None
            if parsed is not None:
                break
            data = self.read()
            if not data:
                raise ClientGone(f"{conn.remote_label} closed before its PROXY header")
            received += data
        header, used = parsed
        if received[used:]:
            self.proto.receive_data(received[used:])
        if header.local:
            self.log(LOGINFO, f"PROXY v{header.version} header from {conn.remote_label} without a client address")
            return
        proxy = conn.remote_label
        conn.remote_ip, conn.remote_port = header.src_ip, header.src_port
        conn.local_ip, conn.local_port = header.dst_ip, header.dst_port
        # What tcpserver said about the proxy (its name, ident, RELAYCLIENT) is not about the client.
        conn.remote_host = conn.remote_info = ""
        conn.relay_client = False
        conn.notes["proxy"] = proxy
        self.log(LOGINFO, f"PROXY v{header.version}: client {conn.remote_label} via {proxy}")

    def greet(self) -> None:
        result = self.host.run("connect", self.txn)
        if result.code in (DENYSOFT, DENYSOFT_DISCONNECT):
            self.respond_deny(Reply(421, result.lines or ["Connection from you temporarily denied, bye bye."], "4.7.0"), result.code, result)
        elif result.code in (DENY, DENY_DISCONNECT):
            self.respond_deny(Reply(554, result.lines or ["Connection from you denied, bye bye."], "5.7.1"), result.code, result)
        else:
            self.answer(result, {}, Reply(220, self.greeting()))

    def greeting(self) -> str:
        text = self.config.get_one("smtpgreeting")
        if text:
            return text if "ESMTP" in text.split() else text + " ESMTP"
        return f"{self.me} ESMTP {SOFTWARE} {VERSION} ready; send us your mail, but not your spam."

    # HELO / EHLO --------------------------------------------------------
    def cmd_helo(self, arg: str) -> None:
        self.hello("helo", arg)

    def cmd_ehlo(self, arg: str) -> None:
        self.hello("ehlo", arg)

    def hello(self, verb: str, arg: str) -> None:
        host = arg.strip().split(" ")[0] if arg.strip() else ""
        if not host:
            return self.protocol_error(Reply(501, f"{verb} requires domain/address - see RFC-5321 4.1.1.1", "5.5.4"))
        if len(host) > 255:
            return self.protocol_error(Reply(501, f"{verb} argument too long", "5.5.4"))
        conn = self.connection
        self.reset_transaction()
        self.proto.reset_transaction()  # even if the hook refuses, the old transaction is gone
        conn.capabilities = []
        result = self.host.run(verb, self.txn, host)
        if result.code not in (OK, DECLINED, DONE):
            self.answer(result, _HELO_REPLIES, Reply(250, ""))
            return
        conn.hello, conn.hello_host, conn.esmtp = verb, host, verb == "ehlo"
        greeting = f"{self.me} Hi {conn.remote_host or conn.remote_ip or 'there'}"
        if conn.remote_ip:
            greeting += f" [{conn.remote_ip}]"
        if verb == "helo":
            self.answer(result, _HELO_REPLIES, Reply(250, greeting + "; I am so happy to meet you."))
            return
        lines = [greeting, "PIPELINING", "8BITMIME", f"SIZE {self.databytes}" if self.databytes else "SIZE",
                 "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING", "DSN", *self.limits()]
        if self.xclient_trusted():
            lines.append("XCLIENT " + " ".join(_XCLIENT_ATTRIBUTES))
        mechanisms = self.auth_mechanisms()
        auth = ["AUTH " + " ".join(mechanisms)] if mechanisms else []
        self.answer(result, _HELO_REPLIES, Reply(250, lines + conn.capabilities + auth))

    def limits(self) -> list[str]:
        """The LIMITS line (RFC 9422), or none; a limit of 0 (unlimited) is left out."""
        limits = [f"{name}={value}" for name, value in (("RCPTMAX", self.max_recipients), ("MAILMAX", self.max_messages))
                  if value > 0]
        return ["LIMITS " + " ".join(limits)] if limits else []

    # MAIL / RCPT ---------------------------------------------------------
    def cmd_mail(self, arg: str) -> None:
        if self.max_messages and self.transactions >= self.max_messages:
            # RFC 9422 5.1: past MAILMAX the client must reconnect; a 4xx tells it to.
            self.log(LOGNOTICE, f"{self.transactions} transactions in this session; disconnecting")
            return self.respond(Reply(421, f"{self.me} Too many transactions in this session", "4.5.3"))
        parsed = self.parse_command(arg, "FROM", "mail_pre")
        if parsed is None:
            return
        path, params = parsed
        error = self.check_mail_params(params)
        if error:
            return self.protocol_error(error)
        try:
            sender = parse_path(path, allow_null=True, allow_utf8="SMTPUTF8" in params)
        except AddressError as exc:
            return self.protocol_error(Reply(exc.code, exc.text, exc.enhanced))
        txn = self.txn
        txn.sender, txn.mail_params = sender, params
        txn.smtputf8 = "SMTPUTF8" in params
        txn.body_type = (params.get("BODY") or "7BIT").upper()
        if "AUTH" in params:
            from .auth import decode_xtext

            # RFC 4954 5: the submitter is believed from an authenticated client only; from anyone else it is <>.
            txn.auth_sender = decode_xtext(params["AUTH"]) if self.connection.auth_user else "<>"
        result = self.host.run("mail", txn, sender, params)
        ok = self.answer(result, {
            DENY: (550, "5.7.1", f"{sender}, denied"),
            DENYSOFT: (450, "4.7.1", f"{sender}, temporarily denied"),
            DENY_DISCONNECT: (550, "5.7.1", f"{sender}, denied"),
            DENYSOFT_DISCONNECT: (421, "4.7.1", f"{sender}, temporarily denied"),
        }, Reply(250, f"{sender}, sender OK - how exciting to get mail from you!", "2.1.0"))
        if ok:
            self.transactions += 1
        else:
            self.reset_transaction()

    def check_mail_params(self, params: dict) -> Reply | None:
        if params and not self.connection.esmtp:
            return Reply(555, "MAIL parameters need EHLO", "5.5.4")
        for key, value in params.items():
            if key == "SIZE":
                if not (value or "").isdigit():
                    return Reply(501, "Bad SIZE parameter", "5.5.4")
                if self.databytes and int(value) > self.databytes:
                    return Reply(552, "Message size exceeds fixed maximum message size", "5.3.4")
            elif key == "BODY":
                if (value or "").upper() not in ("7BIT", "8BITMIME"):
                    return Reply(501, "Bad BODY parameter", "5.5.4")
            elif key == "SMTPUTF8":
                if value is not None:
                    return Reply(501, "SMTPUTF8 takes no value", "5.5.4")
            elif key in ("RET", "ENVID"):
                error = check_dsn_param(key, value)
                if error:
                    return Reply(501, error, "5.5.4")
            elif key == "AUTH" and self.auth_loaded():
                from .auth import decode_xtext

                try:
                    if not decode_xtext(value or ""):
                        raise ValueError("empty")
                except ValueError:
                    return Reply(501, "Bad AUTH parameter", "5.5.4")
            else:
                return Reply(555, f"Unsupported parameter {key}", "5.5.4")
        return None

    def cmd_rcpt(self, arg: str) -> None:
        txn = self.txn
        if len(txn.recipients) >= self.max_recipients:
            return self.respond(Reply(452, "Too many recipients", "4.5.3"))
        parsed = self.parse_command(arg, "TO", "rcpt_pre")
        if parsed is None:
            return
        path, params = parsed
        for key, value in params.items():
            if key not in ("NOTIFY", "ORCPT") or not self.connection.esmtp:
                return self.protocol_error(Reply(555, f"Unsupported parameter {key}", "5.5.4"))
            error = check_dsn_param(key, value)
            if error:
                return self.protocol_error(Reply(501, error, "5.5.4"))
        try:
            rcpt = parse_path(path, allow_bare_postmaster=True, allow_utf8=txn.smtputf8)
        except AddressError as exc:
            return self.protocol_error(Reply(exc.code, exc.text, exc.enhanced))
        if rcpt.host == "" and rcpt.user.lower() == "postmaster":
            # RFC 5321 4.5.1: <postmaster> is always accepted.
            self.add_recipient(rcpt, params)
            return self.respond(Reply(250, f"{rcpt}, recipient ok", "2.1.5"))
        result = self.host.run("rcpt", txn, rcpt, params)
        ok = self.answer(result, {
            DENY: (550, "5.7.1", "relaying denied"),
            DENYSOFT: (450, "4.7.1", "relaying denied"),
            DENY_DISCONNECT: (550, "5.7.1", "delivery denied"),
            DENYSOFT_DISCONNECT: (421, "4.7.1", "relaying denied"),
        }, Reply(250, f"{rcpt}, recipient ok", "2.1.5") if result.code == OK
            else Reply(450, "No plugin decided if relaying is allowed", "4.7.1"))
        if ok and result.code != DECLINED:
            self.add_recipient(rcpt, params)

    def add_recipient(self, rcpt: Address, params: dict) -> None:
        self.txn.recipients.append(rcpt)
        self.txn.rcpt_params.append(params)

    def parse_command(self, arg: str, keyword: str, pre_hook: str):
        """(path text, params dict) from a MAIL/RCPT argument, or None after an error reply."""
        try:
            path, rest = split_mail_arg(arg, keyword)
        except AddressError as exc:
            self.protocol_error(Reply(exc.code, exc.text, exc.enhanced))
            return None
        result = self.host.run(pre_hook, self.txn, path, rest)
        if result.code == OK and result.lines:
            path = result.lines[0]
        elif result.code not in (OK, DECLINED):
            self.answer(result, _SOFT_FAILURE, Reply(451, "Internal error", "4.3.0"))
            return None
        try:
            params = parse_params(rest) if rest.strip() else {}
        except AddressError as exc:
            self.protocol_error(Reply(exc.code, exc.text, exc.enhanced))
            return None
        return path, params

    # DATA ----------------------------------------------------------------
    def cmd_data(self, arg: str) -> None:
        if arg.strip():
            return self.protocol_error(Reply(501, "DATA takes no arguments", "5.5.4"))
        result = self.host.run("data", self.txn)
        ok = self.answer(result, {
            DENY: (554, "5.7.1", "Message denied"),
            DENYSOFT: (451, "4.7.1", "Message denied temporarily"),
            DENY_DISCONNECT: (554, "5.7.1", "Message denied"),
            DENYSOFT_DISCONNECT: (421, "4.7.1", "Message denied temporarily"),
        }, Reply(354, "End data with <CR><LF>.<CR><LF>"))
        if not ok:
            self.proto.reset_transaction()
            self.reset_transaction()
            return
        self.open_spool()

    def open_spool(self) -> None:
        spool_dir = self.config.get_one("spool_dir") or os.environ.get("TMPDIR") or "/tmp"
        self.spool = Spool(spool_dir, self.config.get_int("size_threshold"))
        self.too_big = self.spool_error = False

    def spool_data(self, data: bytes) -> None:
        if self.too_big or self.spool_error or self.spool is None:
            return
        if self.databytes and self.spool.size + len(data) > self.databytes:
            self.too_big = True  # keep reading to the end, store nothing more
            return
        try:
            self.spool.write(data)
        except OSError as exc:  # disk full: this message fails, the session goes on
            self.log(LOGERROR, f"spool error: {exc}; the message will get 451")
            self.spool_error = True

    # BDAT (RFC 3030) ---------------------------------------------------------
    def start_chunk(self, event: p.ChunkStart) -> None:
        """The first chunk asks the data hook, as DATA does; its verdict is the reply after the chunk."""
        if not event.first:
            return
        self.chunk_refusal = None
        result = self.host.run("data", self.txn)
        code = result.code
        if code == DONE and result.lines and result.lines[0][:1] in ("4", "5"):
            first = result.lines[0]
            reply = Reply(int(first[:3]), [first[4:]] + result.lines[1:], _default_enhanced(int(first[:3])))
            self.chunk_refusal = (reply, result)
        elif code in (DENY, DENY_DISCONNECT):
            self.chunk_refusal = (Reply(554, result.lines or ["Message denied"], "5.7.1"), result)
        elif code in (DENYSOFT, DENYSOFT_DISCONNECT):
            reply = Reply(421 if code == DENYSOFT_DISCONNECT else 451, result.lines or ["Message denied temporarily"], "4.7.1")
            self.chunk_refusal = (reply, result)
        else:
            self.open_spool()

    def end_of_chunk(self, event: p.EndOfChunk) -> None:
        refusal = self.chunk_refusal
        if refusal is not None:
            self.chunk_refusal = None
            reply, result = refusal
            self.last_result = f"{reply.code} {reply.text}"
            try:
                self.respond_deny(reply, result.code, result)
            finally:
                self.reset_transaction()
            return
        if event.last:
            return self.end_of_data(event.stats)
        # Refuse as soon as the chunk shows it: the client then sends no more (RFC 3030 2).
        reply = self.check_message(event.stats) if self.too_big or self.spool_error else None
        if reply is not None:
            self.last_result = f"{reply.code} {reply.text}"
            self.log(LOGNOTICE, f"message {self.txn.id} from {self.txn.sender}: {reply.code} {reply.text}")
            self.respond(reply)
            return self.reset_transaction()
        self.respond(Reply(250, f"{event.stats.size} octets received", "2.0.0"))

    def end_of_data(self, stats) -> None:
        txn = self.txn
        try:
            reply = self.check_message(stats)
            if reply is None:
                reply = self.deliver()
        except OSError as exc:
            self.log(LOGERROR, f"spool error: {exc}")
            reply = Reply(451, "Local error in processing - try again later", "4.3.0")
        self.last_result = f"{reply.code} {reply.text}"
        if self.record is not None:
            self.record.message(txn, stats.size, reply.code)
        self.log(LOGINFO if reply.code < 400 else LOGNOTICE,
                 f"message {txn.id} from {txn.sender} to {len(txn.recipients)} recipient(s), {stats.size} octets: "
                 f"{reply.code} {reply.text}")
        self.messages += reply.code < 400
        self.respond(reply)
        self.reset_transaction()

    def check_message(self, stats) -> Reply | None:
        if self.spool_error:
            return Reply(451, "Local error in processing - try again later", "4.3.0")
        if self.too_big:
            return Reply(552, "Message size exceeds fixed maximum message size", "5.3.4")
        if (stats.bare_lf or stats.bare_cr) and self.bare_newline == "reject":
            return Reply(554, "Message contains bare CR or LF characters; lines must end with CRLF (RFC 5321 2.3.8)", "5.6.0")
        max_line = self.proto.max_line_length
        if max_line and stats.longest_line > max_line:
            return Reply(554, f"Message has a line over {max_line} octets (RFC 5321 4.5.3.1.6)", "5.6.0")
        txn = self.txn
        max_size = self.config.get_int("max_header_size")
        head = self.spool.pread(max_size + 2, 0)
        try:
            block, offset = split_header_block(head, max_size, self.config.get_int("max_header_lines"))
        except HeaderLimit as exc:
            return Reply(552, f"Message header is too large: {exc}", "5.3.4")
        txn.header = Headers.parse(block) if block else Headers()
        txn._spool, txn._body_offset, txn.data_size = self.spool, offset, self.spool.size
        return None

    def deliver(self) -> Reply:
        txn = self.txn
        result = self.host.run("received_line", txn)
        if result.code == OK and result.lines:
            txn.header.add_folded("Received", result.lines, prepend=True)
        else:
            txn.header.add_folded("Received", received_lines(self.me, self.connection, txn), prepend=True)
        result = self.host.run("data_post", txn)
        denied = _stage_reply(result, "Message denied")
        if denied:
            return self.finish_denied(denied, result)
        self.add_authentication_results(txn)
        result = self.host.run("queue_pre", txn)
        if result.code not in (OK, DECLINED, DONE):
            return self.finish_denied(Reply(451, result.lines or ["Queuing failed - try again later"], "4.3.0"), result)
        result = self.host.run("queue", txn)
        if result.code == OK:
            self.host.run_all("queue_post", txn)
            return Reply(250, result.lines or ["Queued"], "2.0.0")
        if result.code == DECLINED:
            self.log(LOGWARN, "no queue plugin accepted the message")
            return Reply(451, "Queuing declined or disabled; try again later", "4.3.0")
        if result.code == DONE and result.lines and result.lines[0][:3].isdigit():
            return Reply(int(result.lines[0][:3]), result.lines[0][4:], None)
        if result.code == DONE:
            return Reply(250, result.lines or ["Queued"], "2.0.0")
        return self.finish_denied(_stage_reply(result, "Message denied") or Reply(451, "Queuing failed", "4.3.0"), result)

    def finish_denied(self, reply: Reply, result) -> Reply:
        if result.code in (DENY_DISCONNECT, DENYSOFT_DISCONNECT):
            self.respond_deny(reply, result.code, result)  # raises Disconnect
        return reply

    def discard_spool(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    def add_authentication_results(self, txn) -> None:
        """One `Authentication-Results: ME; auth=pass ...; spf=...; dkim=...` field (RFC 8601), after data_post.

        Plugins only record entries (dns.add_auth_result) in the connection's
        or the transaction's notes; the core writes the one field, so results
        found late in data_post (dkim, dmarc) are in it too.
        """
        entries = [e for e in (self.connection.notes.get("authentication_results"), txn.notes.get("authentication_results")) if e]
        if not entries:
            return
        authserv = self.config.get_one("me-auth-results") or self.me
        if authserv.lower() == "none":
            return
        txn.header.add("Authentication-Results", f"{authserv}; " + "; ".join(entries), prepend=True)

    # STARTTLS --------------------------------------------------------------
    def tls_provider(self):
        """The `tls_context` callable of the plugin that provides TLS, or None (none does, or the transport cannot)."""
        if not hasattr(self.transport, "start_tls"):
            return None
        for plugin in self.host.plugins:
            make = getattr(plugin, "tls_context", None)
            if callable(make):
                return make
        return None

    def tls_context(self, make):
        """The plugin's SSLContext, or None (logged) if it cannot be made: a missing or unreadable certificate."""
        try:
            return make()
        except Exception as exc:
            self.log(LOGERROR, f"cannot start TLS: {exc}")
            return None

    def implicit_tls(self) -> bool:
        """SMTPS: by --smtps, config `smtps`, or (as qpsmtpd) a connection to port 465 with a TLS plugin loaded."""
        if self.smtps or (self.config.get_one("smtps") or "0").lower() not in ("0", "no", "false", "off"):
            return True
        return self.connection.local_port == 465 and self.tls_provider() is not None

    def smtps_handshake(self) -> None:
        make = self.tls_provider()
        context = self.tls_context(make) if make else None
        if context is None:
            if make is None:
                self.log(LOGERROR, "SMTPS: no plugin provides TLS (list `tls` in config/plugins); closing")
            self.proto.state = p.CLOSED  # a TLS client could not read a plaintext reply
            raise Disconnect()
        self.proto.tls = True
        self.start_tls(context)

    def cmd_starttls(self, arg: str) -> None:
        make = self.tls_provider()
        if make is None:
            return self.unrecognized(p.Command("STARTTLS", arg))
        if arg.strip():
            return self.protocol_error(Reply(501, "Syntax error (no parameters allowed)", "5.5.4"))
        context = self.tls_context(make)
        if context is None:
            return self.respond(Reply(454, "TLS not available due to temporary reason", "4.7.0"))
        self.respond(Reply(220, "Ready to start TLS", "2.0.0"))  # the protocol drops what was pipelined after it
        self.start_tls(context)

    def start_tls(self, context) -> None:
        """The handshake; then, as RFC 3207 4.2 asks, forget what the client said before it."""
        try:
            info = self.transport.start_tls(context, min(self.timeout, max(0.0, self.deadline - time.monotonic())))
        except (Timeout, ClientGone) as exc:
            self.proto.state = p.CLOSED  # nothing can be said in plaintext any more
            raise ClientGone(str(exc) or "TLS handshake timed out") from None
        conn = self.connection
        conn.tls = info
        conn.notes["tls_enabled"] = 1  # qpsmtpd's note
        self.reset_transaction()
        conn.hello = conn.hello_host = ""
        conn.esmtp = False
        conn.capabilities = []
        self.log(LOGINFO, f"TLS started: {info}")

    # AUTH ------------------------------------------------------------------
    def auth_loaded(self) -> bool:
        return any(self.host.has(hook) for hook in _AUTH_HOOKS)

    def auth_policy(self):
        if self._auth_policy is None:
            from .auth import Policy

            self._auth_policy = Policy(self.config)
        return self._auth_policy

    def auth_mechanisms(self) -> list[str]:
        """The mechanisms EHLO advertises now (none: no AUTH line)."""
        if not self.auth_loaded():
            return []
        from .auth import available

        return self.auth_policy().offered(available(self.host.has), bool(self.connection.tls))

    def cmd_auth(self, arg: str) -> None:
        if not self.auth_loaded():
            return self.unrecognized(p.Command("AUTH", arg))
        from . import auth

        conn = self.connection
        policy = self.auth_policy()
        if not conn.esmtp:
            return self.protocol_error(Reply(503, "AUTH not defined for HELO", "5.5.1"))
        if not conn.tls and policy.tls_before_auth:
            return self.protocol_error(Reply(530, "Must issue a STARTTLS command first", "5.7.0"))
        mechanism, _, initial = arg.strip().partition(" ")
        mechanism = mechanism.upper()
        known = auth.available(self.host.has)
        if mechanism not in known:
            return self.protocol_error(Reply(504, "Unrecognized authentication type", "5.5.4"))
        if mechanism not in policy.offered(known, bool(conn.tls)):
            return self.protocol_error(Reply(538, "Encryption required for requested authentication mechanism", "5.7.11"))
        self.sasl = auth.Exchange(mechanism, self.me)
        self.sasl_step(self.sasl.start(initial.strip() or None))

    def sasl_step(self, step) -> None:
        """Send the next challenge, an error, or check the credentials the exchange produced."""
        if isinstance(step, Reply) and step.code == 334:
            return self.respond(step)
        mechanism, self.sasl = self.sasl.mechanism, None
        if not isinstance(step, Reply):
            return self.authenticate(step)
        if step.code == 535:
            return self.auth_failed(mechanism, "", step.text)
        self.protocol_error(step)

    def authenticate(self, credentials) -> None:
        """Ask the auth_<mech> hooks, then the auth hooks (qpsmtpd's order); OK is the only yes."""
        from .auth import hook_name

        args = credentials.hook_args()
        result = self.host.run(hook_name(credentials.mechanism), self.txn, *args)
        if result.code == DECLINED:
            result = self.host.run("auth", self.txn, *args)
        mechanism, user = credentials.mechanism, credentials.user
        if result.code == OK:
            return self.auth_succeeded(mechanism, user)
        if result.code == DENYSOFT:
            return self.protocol_error(Reply(454, "Temporary authentication failure", "4.7.0"))
        if result.code == DENYSOFT_DISCONNECT:
            return self.respond(Reply(421, "Temporary authentication failure", "4.7.0"))
        reason = f"{result.plugin}: {result.text}" if result.plugin and result.text else "no plugin accepted it"
        self.auth_failed(mechanism, user, reason, disconnect=result.code == DENY_DISCONNECT)

    def auth_succeeded(self, mechanism: str, user: str) -> None:
        from .auth import result_value

        conn = self.connection
        conn.auth_user, conn.auth_mechanism = user, mechanism
        conn.relay_client = True  # as qpsmtpd: an authenticated client may relay
        entry = f"auth=pass smtp.auth={result_value(user)}"
        found = conn.notes.get("authentication_results")
        conn.notes["authentication_results"] = f"{found}; {entry}" if found else entry
        self.log(LOGINFO, f"AUTH {mechanism} succeeded for {user!r}")
        self.respond(Reply(235, f"{mechanism} authentication successful for {user}", "2.7.0"))

    def auth_failed(self, mechanism: str, user: str, reason: str, disconnect: bool = False) -> None:
        """535 after a delay that doubles with each failure; the last failure allowed gets 421 and the end."""
        self.auth_failures += 1
        policy = self.auth_policy()
        count, limit = self.auth_failures, policy.max_failures
        self.log(LOGNOTICE, f"AUTH {mechanism} failed for {user!r} ({reason}); failure {count}"
                            + (f" of {limit}" if limit else ""))
        delay = min(policy.delay(count), max(0.0, self.deadline - time.monotonic()))
        if delay > 0:
            self.log(LOGINFO, f"delaying the reply by {delay:g}s")
            time.sleep(delay)
        if limit and count >= limit:
            self.log(LOGNOTICE, f"{count} failed AUTH attempts; disconnecting")
            self.respond(Reply(421, f"{self.me} Too many authentication failures", "4.7.0"))
        reply = Reply(535, f"{mechanism} authentication failed" + (f" for {user}" if user else ""), "5.7.8")
        if disconnect:
            self.respond(reply)
            self.transport.flush()
            self.proto.state = p.CLOSED
            raise Disconnect()
        self.respond(reply)

    # XCLIENT (Postfix) -------------------------------------------------------
    def xclient_trusted(self) -> bool:
        if self._xclient_trusted is None:
            entries = self.config.get("xclient_clients")
            if entries:
                from .proxyproto import trusted

                self._xclient_trusted = trusted(self.connection.remote_ip, entries)
            else:
                self._xclient_trusted = False
        return self._xclient_trusted

    def cmd_xclient(self, arg: str) -> None:
        """A trusted front end says who its client is; as Postfix, the session then starts over with 220."""
        if not self.config.get("xclient_clients"):
            return self.unrecognized(p.Command("XCLIENT", arg))
        if not self.xclient_trusted():
            return self.protocol_error(Reply(550, "Error: insufficient authorization", "5.7.0"))
        try:
            values = _xclient_values(arg)
        except ValueError as exc:
            return self.protocol_error(Reply(501, f"Bad XCLIENT syntax: {exc}", "5.5.4"))
        conn = self.connection
        self.log(LOGINFO, f"XCLIENT from {conn.remote_label}: {values}")
        self.reset_transaction()
        if "ADDR" in values:
            conn.remote_ip, conn.remote_port = values["ADDR"], 0  # the front end's port is not the client's
            conn.remote_host = conn.remote_info = ""
            conn.relay_client = False  # decided afresh for the new client, by the connect hooks
        if "PORT" in values:
            conn.remote_port = values["PORT"]
        if "NAME" in values:
            conn.remote_host = values["NAME"]
        conn.hello, conn.hello_host, conn.esmtp = "", values.get("HELO", ""), values.get("PROTO") == "ESMTP"
        conn.capabilities = []
        if values.get("LOGIN"):
            conn.auth_user, conn.auth_mechanism = values["LOGIN"], "XCLIENT"
            conn.relay_client = True  # as after AUTH
        elif "LOGIN" in values:
            conn.auth_user = conn.auth_mechanism = None
        self.greet()
        if values.get("LOGIN"):
            conn.relay_client = True  # a connect hook may not take back what LOGIN gave

    # The rest --------------------------------------------------------------
    def cmd_rset(self, arg: str) -> None:
        self.reset_transaction()
        self.respond(Reply(250, "OK", "2.0.0"))

    def cmd_noop(self, arg: str) -> None:
        result = self.host.run("noop", self.txn)
        self.answer(result, {
            DENY: (500, "5.5.1", "Stop wasting my time."),
            DENYSOFT: (451, "4.3.0", "Internal error"),
            DENY_DISCONNECT: (500, "5.5.1", "Stop wasting my time."),
            DENYSOFT_DISCONNECT: (421, "4.3.0", "Internal error"),
        }, Reply(250, "OK", "2.0.0"))

    def cmd_vrfy(self, arg: str) -> None:
        result = self.host.run("vrfy", self.txn, arg)
        default = (Reply(250, "User OK", "2.0.0") if result.code == OK
                   else Reply(252, "Just try sending a mail and we'll see how it turns out ...", "2.0.0"))
        self.answer(result, {
            DENY: (554, "5.7.1", "Access Denied"),
            DENYSOFT: (451, "4.3.0", "Internal error"),
            DENY_DISCONNECT: (554, "5.7.1", "Access Denied"),
            DENYSOFT_DISCONNECT: (421, "4.3.0", "Internal error"),
        }, default)

    def cmd_help(self, arg: str) -> None:
        result = self.host.run("help", self.txn, arg.split())
        self.answer(result, {
            DENY: (500, "5.5.1", "Syntax error, command not recognized"),
            DENYSOFT: (451, "4.3.0", "Internal error"),
            DENY_DISCONNECT: (500, "5.5.1", "Syntax error, command not recognized"),
            DENYSOFT_DISCONNECT: (421, "4.3.0", "Internal error"),
        }, Reply(214, [f"This is {SOFTWARE} {VERSION}",
                       "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT",
                       "See https://www.rfc-editor.org/rfc/rfc5321"], "2.0.0"))

    def cmd_quit(self, arg: str) -> None:
        result = self.host.run("quit", self.txn)
        bye = Reply(221, f"{self.me} closing connection. Have a wonderful day.", "2.0.0")
        if result.code == DONE and result.lines and result.lines[0][:3] == "221":
            bye = Reply(221, [result.lines[0][4:]] + result.lines[1:], "2.0.0")
        self.respond(bye)

    def unrecognized(self, command: p.Command) -> None:
        result = self.host.run("unrecognized_command", self.txn, command.verb.lower(), command.arg)
        if result.code == DONE and result.lines:
            self.answer(result, {}, Reply(500, "Unrecognized command", "5.5.1"))
            return
        if result.code in (DENY_DISCONNECT, DENYSOFT_DISCONNECT):
            code = 421 if result.code == DENYSOFT_DISCONNECT else 521
            self.respond_deny(Reply(code, result.lines or ["Unrecognized command"], "5.5.1" if code == 521 else "4.3.0"), result.code, result)
        elif result.code == DENYSOFT:
            self.respond(Reply(451, result.lines or ["Internal error"], "4.3.0"))
        else:
            self.protocol_error(Reply(500, (result.lines if result.code == DENY else None) or ["Unrecognized command"], "5.5.1"))

    def reset_transaction(self) -> None:
        had = self.txn.sender is not None or self.spool is not None
        self.discard_spool()
        if had:
            self.host.run_all("reset_transaction", self.txn)
        self.txn = Transaction()

    def log_summary(self) -> None:
        conn = self.connection
        duration = time.time() - conn.started
        self.log.hook = ""
        self.log(LOGINFO,
                 f"session from {conn.remote_label} helo={conn.hello_host or '-'} relay={int(conn.relay_client)} "
                 f"messages={self.messages} errors={self.errors} last={self.last_result or '-'} "
                 f"in={self.transport.bytes_in} out={self.transport.bytes_out} duration={duration:.3f}s")


_XCLIENT_ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN")


def _xclient_values(arg: str) -> dict:
    """XCLIENT's NAME=value pairs, xtext-decoded and checked; [UNAVAILABLE]/[TEMPUNAVAIL] give ""."""
    from .auth import decode_xtext

    values: dict = {}
    words = arg.split()
    if not words:
        raise ValueError("no attributes")
    for word in words:
        name, eq, raw = word.partition("=")
        name = name.upper()
        if not eq or name not in _XCLIENT_ATTRIBUTES:
            raise ValueError(f"bad attribute {name or word!r}")
        value = decode_xtext(raw)  # ValueError if malformed
        if value.upper() in ("[UNAVAILABLE]", "[TEMPUNAVAIL]"):
            value = ""
        if any(not c.isprintable() or c.isspace() for c in value):
            raise ValueError(f"bad {name} value")
        if name == "ADDR" and value:
            import ipaddress

            value = str(ipaddress.ip_address(value[5:] if value.upper().startswith("IPV6:") else value))
        elif name == "PORT":
            if value and not (value.isdigit() and value.isascii() and int(value) <= 65535):
                raise ValueError("bad PORT value")
            value = int(value or 0)
        elif name == "PROTO":
            value = value.upper()
            if value not in ("", "SMTP", "ESMTP"):
                raise ValueError("bad PROTO value")
        values[name] = value
    return values


_HELO_REPLIES = {
    DENY: (550, "5.7.1", "Denied"),
    DENYSOFT: (450, "4.7.1", "Temporarily denied"),
    DENY_DISCONNECT: (550, "5.7.1", "Denied"),
    DENYSOFT_DISCONNECT: (421, "4.7.1", "Temporarily denied"),
}
_SOFT_FAILURE = {
    DENY: (550, "5.5.4", "Denied"),
    DENYSOFT: (451, "4.3.0", "Internal error - try again later"),
    DENY_DISCONNECT: (550, "5.5.4", "Denied"),
    DENYSOFT_DISCONNECT: (421, "4.3.0", "Internal error - try again later"),
}


def _stage_reply(result, text: str) -> Reply | None:
    """The reply for DENY* from data_post or queue, or None to go on."""
    code = result.code
    if code in (DENY, DENY_DISCONNECT):
        return Reply(554, result.lines or [text], "5.7.1")
    if code == DENYSOFT:
        return Reply(451, result.lines or [text + " temporarily"], "4.7.1" if not result.failed else "4.3.0")
    if code == DENYSOFT_DISCONNECT:
        return Reply(421, result.lines or [text + " temporarily"], "4.7.1")
    return None


def _default_enhanced(code: int) -> str | None:
    if code in (220, 221, 354) or code >= 600:
        return None if code != 221 else "2.0.0"
    return f"{code // 100}.0.0"


def _hostname() -> str:
    return os.uname().nodename or "localhost"
