"""Stream connections to the filters a plugin talks to (spamd, clamd...): TCP or a UNIX socket.

    from qpsmtpd_stdio import clientsocket

    with clientsocket.connect("127.0.0.1:783", 783, timeout) as sock:   # or "/run/x.sock", "unix:/run/x.sock"
        sock.sendall(...)
        sock.shutdown(clientsocket.SHUT_WR)

Built on `_socket`, as dns.py is: `socket.py` costs about 4.5 ms per
connection (enum, selectors), and its getaddrinfo() encodes every str host
with the idna codec, another 4 ms (re, stringprep). An IP literal is used as
it is; a host name is resolved with getaddrinfo, each address tried in turn.
A TLS-wrapped connection needs socket.py's socket (ssl); smtpclient.py keeps it.
"""

import _socket

SHUT_WR = _socket.SHUT_WR


class Socket(_socket.socket):
    """A `_socket.socket` that closes at the end of a `with` block."""

    def __enter__(self) -> "Socket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def split_address(address: str, default_port: int) -> tuple[str, int] | str:
    """(host, port) for "HOST", "HOST:PORT", "[V6]:PORT" or a bare IPv6 address; a path for "/PATH" or "unix:PATH"."""
    if address.startswith("unix:"):
        return address[5:]
    if "/" in address:
        return address
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if address.count(":") == 1:
        host, _, port = address.partition(":")
        return host or "localhost", int(port) if port else default_port
    return address or "localhost", default_port


def _literal(host: str) -> int | None:
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, host)
            return family
        except OSError:
            pass
    return None


def connect(address: str, default_port: int, timeout: float) -> "Socket":
    """A connected socket to `address` (see split_address); OSError (TimeoutError) if none can be had."""
    target = split_address(address, default_port)
    if isinstance(target, str):
        candidates = [(_socket.AF_UNIX, target)]
    else:
        host, port = target
        family = _literal(host)
        if family is not None:
            candidates = [(family, (host, port))]
        else:
            name = host.encode("idna") if not host.isascii() else host.encode()
            candidates = [(info[0], info[4]) for info in _socket.getaddrinfo(name, port, 0, _socket.SOCK_STREAM)]
    error: OSError = OSError(f"no address for {address}")
    for family, where in candidates:
        sock = Socket(family, _socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(where)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error
