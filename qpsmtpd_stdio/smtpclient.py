"""A small SMTP and LMTP client for the queue plugins (queue/smtp-forward, queue/lmtp).

It talks to one downstream over one socket, one command at a time, with a
timeout on every connect, read and write. The message is streamed from the
transaction (`txn.message_chunks`) in bounded chunks: it is never whole in
memory. On the way out every line end becomes CRLF (a bare CR or LF kept by
`bare_newline keep` is sent as a line break, never as a lone octet a
downstream might read as the end of DATA), and a leading dot is doubled on
every line (RFC 5321 4.5.2).

Replies are read with a line bound and a line count bound; a reply that is
not `NNN text` is a protocol error. Failures are `DownstreamError`, which says
whether anything may have reached the downstream's queue (`after_data`): a
caller must not try another host, nor claim the message was refused, once
the body was on its way.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

from .digits import number
from .esmtp import encode_xtext

MAX_REPLY_LINE = 2048    # RFC 5321 4.5.3.1.5 says 512 octets; be lenient, but bounded
MAX_REPLY_LINES = 100


class Reply:
    __slots__ = ("code", "lines")

    def __init__(self, code: int, lines: list[str]) -> None:
        self.code = code
        self.lines = lines

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 code the reply starts with, if any."""
        head = self.text.split(" ", 1)[0]
        parts = head.split(".")
        if len(parts) == 3 and parts[0] in "245" and all(p.isdigit() and len(p) <= 3 for p in parts[1:]):
            return head
        return None

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def __str__(self) -> str:
        return f"{self.code} {self.text}"

    def __repr__(self) -> str:
        return f"Reply({self.code}, {self.lines!r})"


class DownstreamError(Exception):
    """A conversation failed: `reply` is the downstream's reply (None: the connection failed or timed out).

    `after_data` is True once the message body was being sent: the downstream
    may then hold a copy, so the caller must neither try another host nor
    answer 5xx.
    """

    def __init__(self, stage: str, reply: Reply | None = None, detail: str = "", after_data: bool = False) -> None:
        self.stage = stage
        self.reply = reply
        self.after_data = after_data
        self.detail = str(reply) if reply is not None else detail
        super().__init__(f"{stage}: {self.detail}")

    @property
    def permanent(self) -> bool:
        return self.reply is not None and self.reply.permanent and not self.after_data


def parse_address(text: str, default_port: int | None) -> tuple:
    """`host`, `host:port`, `[v6]`, `[v6]:port` → (host, port); `unix:/path` → ("unix", path)."""
    if text.startswith("unix:"):
        if not text[5:].startswith("/"):
            raise ValueError(f"{text!r}: unix: needs an absolute path")
        return "unix", text[5:]
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if not rest else None)
    else:
        host, _, port = text.partition(":") if text.count(":") == 1 else (text, "", "")
    if port is None or not host or not all(c.isalnum() or c in ".-_:" for c in host):
        raise ValueError(f"bad host {text!r}")
    if port:
        if not number(port, 65535):
            raise ValueError(f"bad port in {text!r}")
        return host, number(port)
    if default_port is None:
        raise ValueError(f"{text!r} has no port")
    return host, default_port


def client_attributes(conn, wanted: set, **extra: str) -> list[str]:
    """XCLIENT/XFORWARD `NAME=value` words for the original client, those in `wanted` only."""
    ip = conn.remote_ip or ""
    attrs = {"NAME": conn.remote_host or "[UNAVAILABLE]",
             "ADDR": ("IPv6:" + ip if ":" in ip else ip) or "[UNAVAILABLE]",
             "PORT": str(conn.remote_port or "[UNAVAILABLE]"),
             "PROTO": "ESMTP" if conn.esmtp else "SMTP",
             "HELO": conn.hello_host or "[UNAVAILABLE]", **extra}
    return [f"{k}={v if v.startswith('[') else encode_xtext(v)}" for k, v in attrs.items() if k in wanted]


def mail_params(txn, extensions: dict) -> str:
    """The MAIL FROM parameters to pass on (with a leading space), each only if the downstream advertises it.

    BODY=8BITMIME, SMTPUTF8, and the DSN parameters RET and ENVID (RFC 3461),
    which are dropped, as Postfix drops them, for a downstream without DSN.
    """
    words = []
    if txn.body_type == "8BITMIME" and "8BITMIME" in extensions:
        words.append("BODY=8BITMIME")
    if txn.smtputf8 and "SMTPUTF8" in extensions:
        words.append("SMTPUTF8")
    if "DSN" in extensions:
        words += [f"{key}={txn.mail_params[key]}" for key in ("RET", "ENVID") if txn.mail_params.get(key)]
    return "".join(" " + w for w in words)


def rcpt_params(txn, index: int, extensions: dict) -> str:
    """The RCPT TO parameters for recipient `index`: NOTIFY and ORCPT, to a downstream that advertises DSN."""
    if "DSN" not in extensions or index >= len(txn.rcpt_params):
        return ""
    params = txn.rcpt_params[index] or {}
    return "".join(f" {key}={params[key]}" for key in ("NOTIFY", "ORCPT") if params.get(key))


def smtputf8_refusal(txn, extensions: dict, name: str) -> "Reply | None":
    """RFC 6531 3.7.5: a transaction that needs SMTPUTF8 cannot go to a downstream that does not offer it."""
    if not txn.smtputf8 or "SMTPUTF8" in extensions:
        return None
    addresses = [str(txn.sender)] + [str(r) for r in txn.recipients]
    if not all(a.isascii() for a in addresses):
        return Reply(553, [f"5.6.7 non-ASCII addresses not permitted for that sender/recipient ({name} lacks SMTPUTF8)"])
    return Reply(553, [f"5.6.7 SMTPUTF8 is required, but was not offered by {name}"])


def tls_context(verify: bool, cafile: str | None = None):
    """For STARTTLS to a downstream: certificate and host name checked only if `verify`."""
    import ssl

    context = ssl.create_default_context(cafile=cafile)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Client:
    def __init__(self, sock: "socket.socket", timeout: float, lmtp: bool = False, name: str = "") -> None:
        self.sock = sock
        self.timeout = timeout
        self.lmtp = lmtp
        self.name = name            # how log lines and replies name the downstream
        self.extensions: dict[str, str] = {}
        self.tls = False
        sock.settimeout(timeout)
        self.rfile = sock.makefile("rb")

    @classmethod
    def connect(cls, address: tuple, timeout: float, lmtp: bool = False) -> "Client":
        import socket  # here: a session that never reaches the downstream does not pay for socket.py

        host, port = address
        try:
            if host == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                try:
                    sock.connect(port)
                except BaseException:
                    sock.close()
                    raise
                name = f"unix:{port}"
            else:
                sock = socket.create_connection((host, port), timeout)
                name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        except OSError as exc:
            raise DownstreamError("connect", detail=_describe(exc)) from None
        return cls(sock, timeout, lmtp, name)

    # Replies and commands ----------------------------------------------
    def reply(self, stage: str, after_data: bool = False) -> Reply:
        code, lines = None, []
        try:
            while True:
                line = self.rfile.readline(MAX_REPLY_LINE)
                if not line:
                    raise DownstreamError(stage, detail="connection closed", after_data=after_data)
                if not line.endswith(b"\n") or len(lines) >= MAX_REPLY_LINES:
                    raise DownstreamError(stage, detail="reply too long", after_data=after_data)
                line = line.rstrip(b"\r\n").decode("utf-8", "replace")
                this = line[:3]
                if not (this.isdigit() and this[0] in "2345") or line[3:4] not in ("", " ", "-") \
                        or (code is not None and int(this) != code):
                    raise DownstreamError(stage, detail=f"bad reply {line[:80]!r}", after_data=after_data)
                code = int(this)
                lines.append("".join(c for c in line[4:] if c.isprintable()).strip())
                if line[3:4] != "-":
                    return Reply(code, lines)
        except OSError as exc:
            raise DownstreamError(stage, detail=_describe(exc), after_data=after_data) from None

    def send(self, data: bytes, stage: str, after_data: bool = False) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise DownstreamError(stage, detail=_describe(exc), after_data=after_data) from None

    def command(self, line: str, stage: str | None = None) -> Reply:
        if any(c in line for c in "\r\n\0"):
            raise ValueError(f"refusing to send a command with a line break or NUL: {line!r}")
        stage = stage or line.split(" ", 1)[0].upper()
        self.send(line.encode("utf-8") + b"\r\n", stage)
        return self.reply(stage)

    def expect(self, line: str, stage: str | None = None) -> Reply:
        """Send `line`; a reply that is not 2xx/3xx raises DownstreamError."""
        reply = self.command(line, stage)
        if not reply.ok:
            raise DownstreamError(stage or line.split(" ", 1)[0].upper(), reply)
        return reply

    # Session steps ---------------------------------------------------------
    def greeting(self) -> Reply:
        reply = self.reply("greeting")
        if reply.code != 220:
            raise DownstreamError("greeting", reply)
        return reply

    def hello(self, name: str) -> Reply:
        """EHLO (LHLO for LMTP), falling back to HELO for an SMTP server that refuses EHLO."""
        verb = "LHLO" if self.lmtp else "EHLO"
        reply = self.command(f"{verb} {name}", verb)
        if not reply.ok and not self.lmtp and reply.permanent:
            reply = self.expect(f"HELO {name}", "HELO")
            self.extensions = {}
            return reply
        if not reply.ok:
            raise DownstreamError(verb, reply)
        self.extensions = {}
        for line in reply.lines[1:]:
            keyword, _, params = line.partition(" ")
            self.extensions[keyword.upper()] = params
        return reply

    def starttls(self, context, server_hostname: str | None) -> None:
        self.expect("STARTTLS")
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        except OSError as exc:  # ssl.SSLError is an OSError
            raise DownstreamError("STARTTLS", detail=_describe(exc)) from None
        self.rfile = self.sock.makefile("rb")  # anything the server sent before TLS is dropped
        self.tls = True

    def send_message(self, chunks) -> None:
        """Stream the message (LF line ends, as `txn.message_chunks(eol=b"\\n")` gives) and the final dot."""
        at_line_start = True
        for chunk in chunks:
            if not chunk:
                continue
            chunk = chunk.replace(b"\r", b"\n")  # only bare CRs are left in LF text
            if at_line_start and chunk[:1] == b".":
                chunk = b"." + chunk
            chunk = chunk.replace(b"\n.", b"\n..")
            at_line_start = chunk.endswith(b"\n")
            self.send(chunk.replace(b"\n", b"\r\n"), "DATA", after_data=True)
        self.send(b".\r\n" if at_line_start else b"\r\n.\r\n", "DATA", after_data=True)

    def close(self, quit: bool = True) -> None:
        """QUIT (briefly, errors ignored) and close."""
        try:
            if quit:
                self.sock.settimeout(min(self.timeout, 5))
                self.sock.sendall(b"QUIT\r\n")
                self.rfile.readline(MAX_REPLY_LINE)
        except OSError:
            pass
        finally:
            try:
                self.rfile.close()
                self.sock.close()
            except OSError:
                pass


def _describe(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
        return "timed out"
    return exc.strerror or str(exc) or type(exc).__name__
