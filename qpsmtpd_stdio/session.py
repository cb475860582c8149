"""One SMTP session: drives the protocol core over the transport and asks plugins at every step.

The session reads bytes, feeds them to the protocol (protocol.py), and answers
each event: it asks the plugin host (pluginhost.py) for a hook's verdict,
turns the verdict into a reply with replies.py, and sends it. ESMTP keywords
and parameters are in esmtp.py, the message's way from DATA to the queue in
delivery.py, and the extension commands in their own modules, imported only
when a client uses them: starttls.py, authcommand.py, xclient.py.
"""

import os
import time

from . import protocol as p
from .address import Address, AddressError, parse_path
from .constants import DECLINED, DONE, LOGDEBUG, LOGERROR, LOGINFO, LOGNOTICE, OK, SOFTWARE, VERSION
from .esmtp import (MAIL_PARAMETERS, RCPT_PARAMETERS, Limits, check_params, command_argument, ehlo_keywords,
                    mail_argument)
from .protocol import Reply
from .replies import Verdict, decide, greeting, reply_code
from .signals import Terminate
from .transaction import Transaction
from .transport import ClientGone, Deadlines, Timeout


class Disconnect(Exception):
    """The session is over (421, 221, a *_DISCONNECT result)."""


# Hooks that make AUTH available (auth.available() says which mechanisms); listed here so
# that a session without auth plugins never imports auth.py.
AUTH_HOOKS = ("auth", "auth_plain", "auth_login", "auth_cram_md5")
# Verbs served by a module of their own, imported when a client first uses one.
EXTENSIONS = {"STARTTLS": "starttls", "AUTH": "authcommand", "XCLIENT": "xclient"}


class Session:
    def __init__(self, config, log, transport, connection, host, smtps: bool = False) -> None:
        self.config = config
        self.log = log
        self.transport = transport
        self.connection = connection
        self.host = host
        self.me = config.get_one("me") or os.uname().nodename or "localhost"
        self.timeout = config.get_int("timeoutsmtpd") if config.get("timeoutsmtpd") else config.get_int("timeout")
        self.deadlines = Deadlines(config.get_int("session_timeout"), config.get_int("pre_data_timeout"),
                                   config.get_int("min_data_rate"))
        self.databytes = config.get_int("databytes")
        self.max_recipients = config.get_int("max_recipients")
        self.max_messages = config.get_int("max_messages")
        self.max_errors = config.get_int("max_errors")
        self.bare_newline = config.get_choice("bare_newline")
        self.proto = p.ServerConnection(config.get_int("max_command_length"), config.get_int("max_line_length"))
        self.txn = Transaction()
        self.transactions = 0  # MAIL commands accepted (LIMITS MAILMAX)
        self.errors = 0
        self.messages = 0
        self.last_result = ""
        self.incoming = None  # delivery.Incoming: the message being received
        self.chunk_refusal: tuple | None = None  # BDAT: (verdict, plugin) of a data hook that refused the first chunk
        self.smtps = smtps   # TLS before the greeting (--smtps)
        self.auth = None     # authcommand.AuthState, once AUTH is offered or used
        self.xclient_trusted: bool | None = None  # xclient.trusted() decides it once
        self.record = None   # sessionrecord.SessionRecord, with config `session_record` or `prometheus_textfile`
        host.input_probe = lambda wait: self.proto.buffered > 0 or transport.readable(wait)

    # The loop ----------------------------------------------------------
    def run(self) -> None:
        if self.config.get_one("session_record") or self.config.get_one("prometheus_textfile"):
            from . import sessionrecord

            self.record = sessionrecord.start(self.config, self.host)
        try:
            if self.config.get("proxy_clients"):
                self.proxy_header()
            if (self.smtps or self.connection.local_port == 465 or self.config.get("smtps")) \
                    and self.extension("STARTTLS").implicit(self):
                self.extension("STARTTLS").handshake(self)
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
            self.discard_message()
            self.host.run_all("disconnect", self.txn)
            self.host.run_all("post_connection", self.txn)
            self.log_summary()
            if self.record is not None:
                self.record.finish(self.connection, self.last_result, self.errors, self.log)

    def extension(self, verb: str):
        """The module that serves an extension verb (starttls, authcommand, xclient)."""
        # __import__, not importlib: importlib costs every connection half a millisecond.
        return __import__(f"{__package__}.{EXTENSIONS[verb]}", fromlist=["_"])

    def read(self) -> bytes:
        deadline, why = self.deadlines.next()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            self.time_is_up(why)
        wait = min(self.timeout, remaining)
        try:
            data = self.transport.read(wait)
        except Timeout:
            if wait >= self.timeout:
                raise
            self.time_is_up(why)
        self.deadlines.received(len(data))
        return data

    def time_is_up(self, why: str) -> None:
        self.log(LOGNOTICE, f"{why}; disconnecting {self.connection.remote_label}")
        self.fail(Reply(421, f"{self.me} Error: {why}", "4.4.2"))
        raise Disconnect()

    def fail(self, reply: Reply) -> None:
        """Send a last reply if the client can still get one."""
        if self.proto.state == p.CLOSED:
            return
        try:
            self.transport.write(self.proto.send(reply))
            self.transport.flush()
        except (ClientGone, p.ProtocolError):
            pass
        self.proto.close()

    def close(self) -> None:
        """Flush what was said and end the session."""
        self.transport.flush()
        self.proto.close()
        raise Disconnect()

    def respond(self, reply: Reply) -> None:
        self.transport.write(self.proto.send(reply))
        if reply.code >= 400:
            self.last_result = f"{reply.code} {reply.text}"
        if self.proto.state == p.CLOSED:
            self.close()

    def send(self, verdict: Verdict, plugin: str = "") -> bool:
        """Send a verdict's reply (logged, naming the plugin that refused); close after a *_DISCONNECT one."""
        reply = verdict.reply
        if verdict.refused and plugin:
            self.log(LOGINFO, f"{reply.code} {reply.text}", plugin)
        self.respond(reply)
        if verdict.disconnect:
            self.close()
        return verdict.ok

    def answer(self, stage: str, result, default: Reply, subject: str = "") -> bool:
        """Send the reply that a hook's `result` stands for at `stage`; True if the command succeeded."""
        return self.send(decide(stage, result, default, subject), result.plugin)

    def protocol_error(self, reply: Reply) -> None:
        """A syntax or sequence error: counted, and past max_errors the session ends."""
        self.errors += 1
        if self.max_errors and self.errors >= self.max_errors:
            self.log(LOGNOTICE, f"{self.errors} errors; disconnecting")
            self.respond(Reply(421, f"{self.me} Error: too many errors", "4.7.0"))
        self.respond(reply)

    def log_input(self, event) -> None:
        """The client's command lines at LOGDEBUG, as the protocol parsed them: an AUTH initial response
        and every line of a SASL exchange are masked because of what they are, however the octets came."""
        if isinstance(event, p.AuthResponse):
            line = "***"
        elif event.verb == "AUTH":
            mechanism, _, initial = event.arg.partition(" ")
            line = "AUTH " + mechanism + (" ***" if initial else "")
        else:
            line = f"{event.verb} {event.arg}".rstrip()
        self.log(LOGDEBUG, f"<- {line[:512]!r}")

    def handle(self, event) -> None:
        if self.log.level >= LOGDEBUG and isinstance(event, (p.Command, p.AuthResponse)):
            self.log_input(event)
        if isinstance(event, p.Command):
            if event.verb in EXTENSIONS:
                return self.extension(event.verb).command(self, event.arg)
            if event.verb in ("HELO", "EHLO"):
                return self.hello(event.verb.lower(), event.arg)
            handler = getattr(self, "cmd_" + event.verb.lower(), None) if event.verb in p.KNOWN_VERBS else None
            if handler is None:
                self.unrecognized(event)
            else:
                handler(event.arg)
        elif isinstance(event, p.AuthResponse):
            if self.auth is None or self.auth.exchange is None:
                # A plugin answered AUTH itself (unrecognized_command): the exchange's lines go to it too.
                verb, _, arg = event.line.partition(" ")
                self.unrecognized(p.Command(verb.upper(), arg))
            else:
                self.extension("AUTH").response(self, event.line)
        elif isinstance(event, p.MessageData):
            if self.incoming is not None:
                self.incoming.write(event.data, self.log, event.bare_lf, event.bare_cr)
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
            if self.proto.state != p.SASL and self.auth is not None:
                self.auth.exchange = None  # a bad line inside an AUTH exchange ends it
        elif isinstance(event, p.ConnectionClosed):
            if event.in_data:
                self.log(LOGNOTICE, "client disconnected during DATA; nothing queued")
                self.last_result = "disconnected during DATA"
            self.proto.close()

    # Connection ---------------------------------------------------------
    def proxy_header(self) -> None:
        from . import proxyproto

        try:
            proxyproto.receive(self)
        except proxyproto.ProxyError as exc:
            self.log(LOGNOTICE, f"bad PROXY header from {self.connection.remote_label}: {exc}; closing")
            self.proto.close()
            raise Disconnect() from None

    def client_changed(self, how: str) -> None:
        """A PROXY header or XCLIENT named the real client: the log and the transcript say who it is from now on."""
        text = f"{how}: client {self.connection.remote_label}"
        self.log(LOGINFO, text)
        if self.transport.transcript is not None:
            self.transport.transcript.note(text)

    def greet(self) -> None:
        result = self.host.run("connect", self.txn)
        self.answer("connect", result, Reply(220, greeting(self.config.get_one("smtpgreeting"), self.me)))

    # HELO / EHLO --------------------------------------------------------
    def hello(self, verb: str, arg: str) -> None:
        if (parsed := command_argument(self, arg, f"{verb}_parse")) is False:
            return None
        host = parsed[0] if parsed else arg.strip().split(" ")[0] if arg.strip() else ""
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
            self.answer(verb, result, Reply(250, ""))
            return
        conn.hello, conn.hello_host, conn.esmtp = verb, host, verb == "ehlo"
        greeting = f"{self.me} Hi {conn.remote_host or conn.remote_ip or 'there'}"
        if conn.remote_ip:
            greeting += f" [{conn.remote_ip}]"
        if verb == "helo":
            self.answer(verb, result, Reply(250, greeting + "; I am so happy to meet you."))
            return
        xclient = self.extension("XCLIENT").trusted(self) if self.config.get("xclient_clients") else False
        mechanisms = self.extension("AUTH").mechanisms(self) if self.auth_loaded() else []
        keywords = ehlo_keywords(self.databytes, self.max_recipients, self.max_messages, xclient)
        auth = ["AUTH " + " ".join(mechanisms)] if mechanisms else []
        self.answer(verb, result, Reply(250, [greeting, *keywords, *conn.capabilities, *auth]))

    def auth_loaded(self) -> bool:
        return any(self.host.has(hook) for hook in AUTH_HOOKS)

    # MAIL / RCPT ---------------------------------------------------------
    def cmd_mail(self, arg: str) -> None:
        if self.max_messages and self.transactions >= self.max_messages:
            # RFC 9422 5.1: past MAILMAX the client must reconnect; a 4xx tells it to.
            self.log(LOGNOTICE, f"{self.transactions} transactions in this session; disconnecting")
            return self.respond(Reply(421, f"{self.me} Too many transactions in this session", "4.5.3"))
        parsed = mail_argument(self, arg, "FROM", "mail_pre")
        if parsed is None:
            return
        path, params = parsed
        error = check_params(MAIL_PARAMETERS, params, self.connection.esmtp,
                             Limits(self.databytes, self.auth_loaded()), self.host.declared("mail_parameters"))
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
        if "AUTH" in params and self.auth_loaded():
            from .esmtp import decode_xtext

            # RFC 4954 5: the submitter is believed from an authenticated client only; from anyone else it is <>.
            txn.auth_sender = decode_xtext(params["AUTH"]) if self.connection.auth_user else "<>"
        result = self.host.run("mail", txn, sender, params)
        if self.answer("mail", result, Reply(250, f"{sender}, sender OK - how exciting to get mail from you!", "2.1.0"),
                       str(sender)):
            self.transactions += 1
        else:
            self.reset_transaction()

    def cmd_rcpt(self, arg: str) -> None:
        txn = self.txn
        if self.max_recipients and len(txn.recipients) >= self.max_recipients:  # 0: no limit, as LIMITS says
            return self.respond(Reply(452, "Too many recipients", "4.5.3"))
        parsed = mail_argument(self, arg, "TO", "rcpt_pre")
        if parsed is None:
            return
        path, params = parsed
        error = check_params(RCPT_PARAMETERS, params, self.connection.esmtp, Limits(),
                             self.host.declared("rcpt_parameters"))
        if error:
            return self.protocol_error(error)
        try:
            rcpt = parse_path(path, allow_bare_postmaster=True, allow_utf8=txn.smtputf8)
        except AddressError as exc:
            return self.protocol_error(Reply(exc.code, exc.text, exc.enhanced))
        if rcpt.host == "" and rcpt.user.lower() == "postmaster":
            # RFC 5321 4.5.1: <postmaster> is always accepted.
            self.add_recipient(rcpt, params)
            return self.respond(Reply(250, f"{rcpt}, recipient ok", "2.1.5"))
        result = self.host.run("rcpt", txn, rcpt, params)
        default = (Reply(250, f"{rcpt}, recipient ok", "2.1.5") if result.code == OK
                   else Reply(450, "No plugin decided if relaying is allowed", "4.7.1"))
        if self.answer("rcpt", result, default):
            self.add_recipient(rcpt, params)

    def add_recipient(self, rcpt: Address, params: dict) -> None:
        self.txn.recipients.append(rcpt)
        self.txn.rcpt_params.append(params)

    # DATA and BDAT (RFC 3030) ---------------------------------------------
    def cmd_data(self, arg: str) -> None:
        if arg.strip():
            return self.protocol_error(Reply(501, "DATA takes no arguments", "5.5.4"))
        result = self.host.run("data", self.txn)
        if self.answer("data", result, Reply(354, "End data with <CR><LF>.<CR><LF>")):
            self.start_message()
        else:
            self.proto.reset_transaction()
            self.reset_transaction()

    def start_message(self) -> None:
        from .delivery import Incoming  # imported with a session's first message only
        self.incoming = Incoming(self.config, self.databytes, self.bare_newline)
        self.deadlines.start_message(self.timeout)

    def start_chunk(self, event: p.ChunkStart) -> None:
        """The first chunk asks the data hook, as DATA does; its verdict is the reply after the chunk."""
        if not event.first:
            return
        result = self.host.run("data", self.txn)
        verdict = decide("data", result, Reply(354, ""))
        self.chunk_refusal = None if verdict.ok else (verdict, result.plugin)
        if verdict.ok:
            self.start_message()

    def end_of_chunk(self, event: p.EndOfChunk) -> None:
        if self.chunk_refusal is not None:
            verdict, plugin = self.chunk_refusal
            self.chunk_refusal = None
            try:
                self.send(verdict, plugin)
            finally:
                self.reset_transaction()
            return
        if event.last:
            return self.end_of_data(event.stats)
        # Refuse as soon as the chunk shows it: the client then sends no more (RFC 3030 2).
        reply = self.incoming.refusal() if self.incoming is not None else None
        if reply is not None:
            self.log(LOGNOTICE, f"message {self.txn.id} from {self.txn.sender}: {reply.code} {reply.text}")
            self.respond(reply)
            return self.reset_transaction()
        self.respond(Reply(250, f"{event.stats.size} octets received", "2.0.0"))

    def end_of_data(self, stats) -> None:
        from .delivery import LOCAL_ERROR, deliver

        txn = self.txn
        try:
            reply = self.incoming.check(stats, txn, self.config, self.proto.max_line_length)
            verdict = Verdict(reply) if reply is not None else \
                deliver(self.host, txn, self.connection, self.config, self.me, self.log)
        except OSError as exc:
            self.log(LOGERROR, f"spool error: {exc}")
            verdict = Verdict(LOCAL_ERROR)
        reply = verdict.reply
        self.last_result = f"{reply.code} {reply.text}"
        if self.record is not None:
            self.record.message(txn, stats.size, reply.code)
        self.log(LOGINFO if reply.code < 400 else LOGNOTICE,
                 f"message {txn.id} from {txn.sender} to {len(txn.recipients)} recipient(s), {stats.size} octets: "
                 f"{reply.code} {reply.text}")
        self.messages += reply.code < 400
        self.send(verdict)
        self.reset_transaction()

    def discard_message(self) -> None:
        self.deadlines.end_message()
        if self.incoming is not None:
            self.incoming.close()
            self.incoming = None

    # The rest --------------------------------------------------------------
    def cmd_rset(self, arg: str) -> None:
        self.reset_transaction()
        self.respond(Reply(250, "OK", "2.0.0"))

    def cmd_noop(self, arg: str) -> None:
        self.answer("noop", self.host.run("noop", self.txn), Reply(250, "OK", "2.0.0"))

    def cmd_vrfy(self, arg: str) -> None:
        result = self.host.run("vrfy", self.txn, arg)
        default = (Reply(250, "User OK", "2.0.0") if result.code == OK
                   else Reply(252, "Just try sending a mail and we'll see how it turns out ...", "2.0.0"))
        self.answer("vrfy", result, default)

    def cmd_help(self, arg: str) -> None:
        result = self.host.run("help", self.txn, arg.split())
        lines = result.lines if result.code == OK and result.lines else [  # (OK, lines): the help plugin's text
            f"This is {SOFTWARE} {VERSION}", "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT",
            "See https://www.rfc-editor.org/rfc/rfc5321"]
        self.answer("help", result, Reply(214, lines, "2.0.0"))

    def cmd_quit(self, arg: str) -> None:
        bye = Reply(221, f"{self.me} closing connection. Have a wonderful day.", "2.0.0")
        result = self.host.run("quit", self.txn)
        if result.code == DONE and result.lines and reply_code(result.lines[0]) == 221:
            bye = decide("quit", result, bye).reply  # (DONE, "221 text") replaces the goodbye
        self.respond(bye)

    def unrecognized(self, command: p.Command) -> None:
        result = self.host.run("unrecognized_command", self.txn, command.verb.lower(), command.arg)
        verdict = decide("unrecognized_command", result, Reply(500, "Unrecognized command", "5.5.1"))
        if (result.code == DONE and result.lines) or verdict.disconnect or verdict.reply.code == 451:
            self.send(verdict, result.plugin if verdict.disconnect else "")
        else:
            self.protocol_error(verdict.reply)  # counted toward max_errors

    def reset_transaction(self) -> None:
        had = self.txn.sender is not None or self.incoming is not None
        self.discard_message()
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
