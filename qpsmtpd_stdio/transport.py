"""The client's bytes on fd 0 and fd 1: a socket (inetd, xinetd, tcpserver, systemd) or pipes.

Replies are queued by `write()` and go out on `flush()`, which the session
calls before it blocks for more input, so pipelined replies leave in one
group (RFC 2920). A read waits at most `timeout` seconds. A `transcript`
(see transcript.py), when set, is given every octet read and written.

After `start_tls()` the same calls carry plaintext and the octets on the fds
are TLS (tls.py), whether fd 0/1 is a socket or two pipes. The transcript
still sees the plaintext.
"""

import os
import select
import time

READ_SIZE = 1 << 20  # large reads keep DATA throughput up; memory is bounded by this


class Timeout(Exception):
    """No byte arrived within the read timeout."""


class ClientGone(Exception):
    """The client closed the connection or it broke."""


class Deadlines:
    """How long the session may still wait for the client: the earliest of three limits, and its name.

    `session_timeout` bounds the whole session; `pre_data_timeout` the time
    until a message starts (a client that only talks gets 421); during DATA or
    BDAT, `min_data_rate` gives each octet received 1/rate seconds more
    (Postfix's smtpd_min_data_rate), so a client that trickles a message is
    cut off. 0 turns a limit off. Together they keep slow clients from holding
    a superserver's slots (xinetd `instances`, `per_source`).
    """

    def __init__(self, session: float, pre_data: float = 0, min_data_rate: int = 0, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.session = now + session
        self.pre_data = now + pre_data if pre_data else None
        self.pre_data_timeout = pre_data
        self.min_data_rate = min_data_rate
        self.data: float | None = None  # while a message is received, with min_data_rate

    def start_message(self, timeout: float, now: float | None = None) -> None:
        self.pre_data = None
        if self.min_data_rate:
            self.data = (time.monotonic() if now is None else now) + timeout

    def end_message(self) -> None:
        self.data = None

    def received(self, octets: int) -> None:
        if self.data is not None:
            self.data += octets / self.min_data_rate

    def next(self) -> tuple[float, str]:
        """(the earliest deadline, what the client is told when it passes)."""
        found = (self.session, "session time limit exceeded")
        if self.pre_data is not None:
            found = min(found, (self.pre_data, f"no message within {self.pre_data_timeout:g}s"))
        if self.data is not None:
            found = min(found, (self.data, "data rate too low"))
        return found


class Transport:
    def __init__(self, rfd: int = 0, wfd: int = 1) -> None:
        self.rfd = rfd
        self.wfd = wfd
        self._out: list[bytes] = []
        self._poll = select.poll()
        self._poll.register(rfd, select.POLLIN | select.POLLPRI)
        self.bytes_in = 0
        self.bytes_out = 0
        self.transcript = None
        self.tls = None  # a tls.TLSLayer once TLS has started

    def read(self, timeout: float) -> bytes:
        """Up to READ_SIZE octets; b"" at end of input. Raises Timeout."""
        self.flush()
        if self.tls is None:
            data = self._read_raw(timeout)
        else:
            data = self._tls(self.tls.read, self._read_raw, self._write_raw, timeout, READ_SIZE)
        if self.transcript is not None:
            self.transcript.received(data)
        return data

    def _read_raw(self, timeout: float) -> bytes:
        if not self._poll.poll(max(0, int(timeout * 1000))):
            raise Timeout()
        try:
            data = os.read(self.rfd, READ_SIZE)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        self.bytes_in += len(data)
        return data

    def readable(self, timeout: float) -> bool:
        """True if the client has sent something (or closed) within `timeout` seconds."""
        if self.tls is not None and self.tls.pending():
            return True
        return bool(self._poll.poll(max(0, int(timeout * 1000))))

    def start_tls(self, context, timeout: float):
        """Run the TLS handshake (server side) within `timeout` seconds; from then on, reads and writes are TLS.

        Returns a tls.TLSInfo. Raises ClientGone if the handshake fails, Timeout if it stalls.
        """
        from .tls import TLSLayer

        self.flush()
        layer = TLSLayer(context)
        info = self._tls(layer.handshake, self._read_raw, self._write_raw, timeout)
        self.tls = layer
        return info

    @staticmethod
    def _tls(method, *args):
        """Call the TLS layer, its failures made this module's: TLSError is ClientGone, TLSTimeout is Timeout."""
        from .tls import TLSError, TLSTimeout  # imported already: TLS has started

        try:
            return method(*args)
        except TLSTimeout:
            raise Timeout() from None
        except TLSError as exc:
            raise ClientGone(str(exc)) from None

    def write(self, data: bytes) -> None:
        self._out.append(data)

    def flush(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        if self.transcript is not None:
            self.transcript.sent(data)
        if self.tls is not None:
            data = self._tls(self.tls.encrypt, data)
        self._write_raw(data)

    def _write_raw(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.wfd, view)
                view = view[n:]
                self.bytes_out += n
        except OSError as exc:  # EPIPE, ECONNRESET, EBADF...
            raise ClientGone(str(exc)) from None

    def close(self, linger: float = 2.0, limit: int = 1 << 20) -> None:
        """End the session cleanly: flush, send FIN, and read what the client still sends.

        Closing a socket with unread input makes the kernel send RST, which
        can destroy our last reply (a 421) before the client reads it.
        """
        try:
            self.flush()
            if self.tls is not None:
                self._tls(self.tls.close, self._write_raw)
        except ClientGone:
            return
        import _socket

        try:
            sock = _socket.socket(fileno=self.wfd)
        except OSError:
            return  # a pipe: nothing to linger on
        try:
            sock.shutdown(_socket.SHUT_WR)
        except OSError:
            return
        finally:
            sock.detach()
        import time

        deadline = time.monotonic() + linger
        while limit > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poll.poll(int(remaining * 1000)):
                return
            try:
                data = os.read(self.rfd, 65536)
            except OSError:
                return
            if not data:
                return
            limit -= len(data)
