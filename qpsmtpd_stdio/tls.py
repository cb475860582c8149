"""TLS on fd 0/1: STARTTLS (RFC 3207) and implicit TLS (SMTPS, RFC 8314), over a socket or two pipes.

Why memory BIOs and not ssl.wrap_socket: under a superserver fd 0 is a
socket, but under a pipe (tests, stunnel-like wrappers) fd 0 and fd 1 are two
pipes, and a socket wrapper cannot drive those. An ssl.SSLObject never
touches a file descriptor: the transport reads raw octets from fd 0 into
`incoming` and writes what TLS puts in `outgoing` to fd 1, the same way for
both.

This module imports ssl (about 17 ms), so the transport imports it only when
TLS starts.
"""

import ssl
import time


RECORD = 16384  # the largest TLS plaintext record

# TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3 suites are all of that kind).
DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!SHA1"

_VERSIONS = {"tlsv12": ssl.TLSVersion.TLSv1_2, "tlsv13": ssl.TLSVersion.TLSv1_3}
_ALL = ("sslv2", "sslv3", "tlsv1", "tlsv11", "tlsv12", "tlsv13")


def protocol_range(spec: str | None) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """(lowest, highest) TLS version from qpsmtpd's `tls_protocols` syntax, never below TLS 1.2.

    `SSLv23:!SSLv2:!SSLv3` (qpsmtpd's default) means all but those; `TLSv1_2`
    alone means only that one; `TLSv1.3`, `TLSv1_3` and `TLSv13` are the same.
    """
    enabled: set[str] = set()
    words = [w.strip().lower().replace("_", "").replace(".", "") for w in (spec or "").split(":") if w.strip()]
    if not words or words[0].startswith("!"):
        enabled.update(_ALL)
    for word in words:
        negate = word.startswith("!")
        name = word.lstrip("!")
        names = set(_ALL) if name in ("sslv23", "tls", "all") else {name}
        if not names <= set(_ALL):
            raise ValueError(f"tls_protocols: unknown protocol {word!r}")
        enabled = enabled - names if negate else enabled | names
    usable = sorted(_VERSIONS[name] for name in enabled if name in _VERSIONS)
    if not usable:
        raise ValueError(f"tls_protocols {spec!r} leaves no TLS 1.2 or later")
    return usable[0], usable[-1]


def server_context(cert: str, key: str, ca: str | None = None, ciphers: str | None = None,
                   protocols: str | None = None, dhparam: str | None = None) -> ssl.SSLContext:
    """A server context: TLS 1.2+, forward-secret AEAD suites, no client certificate asked for.

    `ca` (optional) lets OpenSSL complete the chain sent to clients when the
    certificate file holds only the server's own certificate.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version, context.maximum_version = protocol_range(protocols)
    context.set_ciphers(ciphers or DEFAULT_CIPHERS)
    # Every connection is a new process: a session ticket could never be redeemed.
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_TICKET
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    context.num_tickets = 0
    context.load_cert_chain(cert, key)
    if ca:
        context.load_verify_locations(ca)
    if dhparam:
        context.load_dh_params(dhparam)
    return context


class TLSInfo:
    """What a Received header and the plugins learn about the TLS session (`connection.tls`)."""

    __slots__ = ("version", "cipher", "bits")

    def __init__(self, version: str, cipher: str, bits: int) -> None:
        self.version = version
        self.cipher = cipher
        self.bits = bits

    def __str__(self) -> str:
        return f"{self.version} with cipher {self.cipher} ({self.bits} bits)"

    def __repr__(self) -> str:
        return f"TLSInfo({self.version!r}, {self.cipher!r}, {self.bits})"


class TLSError(Exception):
    """The TLS session failed: a bad handshake or record. transport.py makes it ClientGone."""


class TLSTimeout(Exception):
    """The peer sent nothing within the time allowed. transport.py makes it Timeout."""


class TLSLayer:
    """One server-side TLS session between the transport's raw reads and writes and the plaintext it hands on.

    `read_raw(timeout)` returns octets (b"" at end of input); `write_raw(data)`
    sends them all. What they raise passes through; this layer's own failures
    are TLSError and TLSTimeout, so it needs nothing from transport.py.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._incoming, self._outgoing, server_side=True)

    def handshake(self, read_raw, write_raw, timeout: float) -> TLSInfo:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send(write_raw)
                self._receive(read_raw, deadline)
            except ssl.SSLError as exc:
                self._send(write_raw, quiet=True)  # the alert tells the client why
                raise TLSError(f"TLS handshake failed: {_reason(exc)}") from None
        self._send(write_raw)
        name, _, bits = self._obj.cipher()
        return TLSInfo(self._obj.version() or "TLS", name, bits or 0)

    def read(self, read_raw, write_raw, timeout: float, limit: int) -> bytes:
        """Plaintext: what is decryptable now, waiting up to `timeout` for at least one octet; b"" at the end."""
        deadline = time.monotonic() + timeout
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            try:
                data = self._obj.read(min(RECORD, limit - size))
            except ssl.SSLWantReadError:
                if chunks:
                    break
                self._send(write_raw)  # e.g. the answer to a key update
                self._receive(read_raw, deadline)
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""  # close_notify, or the client just closed: the end either way
            except ssl.SSLError as exc:
                raise TLSError(f"TLS error: {_reason(exc)}") from None
            if not data:
                break
            chunks.append(data)
            size += len(data)
        self._send(write_raw)
        return b"".join(chunks)

    def pending(self) -> bool:
        """True if octets already received wait to be read (decrypted, or still in the incoming buffer)."""
        return self._obj.pending() > 0 or self._incoming.pending > 0

    def encrypt(self, data: bytes) -> bytes:
        view = memoryview(data)
        try:
            while view:
                view = view[self._obj.write(view):]
        except ssl.SSLError as exc:
            raise TLSError(f"TLS error: {_reason(exc)}") from None
        return self._outgoing.read()

    def close(self, write_raw) -> None:
        """Send close_notify; the client's answer is not waited for."""
        try:
            self._obj.unwrap()
        except ssl.SSLError:
            pass  # SSLWantReadError: the peer's close_notify has not come, nor need it
        self._send(write_raw, quiet=True)

    def _receive(self, read_raw, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TLSTimeout()
        data = read_raw(remaining)
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    def _send(self, write_raw, quiet: bool = False) -> None:
        data = self._outgoing.read()
        if not data:
            return
        try:
            write_raw(data)
        except Exception:
            if not quiet:  # an alert or close_notify that cannot go out changes nothing
                raise


def _reason(exc: ssl.SSLError) -> str:
    return exc.reason or exc.strerror or str(exc)
