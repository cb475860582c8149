"""Who is calling: the tcpserver variables when set, else the socket on fd 0. No DNS lookups."""

from __future__ import annotations

from .transaction import Connection


def unmap(ip: str) -> str:
    """'::ffff:192.0.2.1' -> '192.0.2.1'; other addresses unchanged."""
    if ip.lower().startswith("::ffff:") and ip.count(".") == 3:
        return ip[7:]
    return ip


def identify(environ, fd: int = 0) -> Connection:
    conn = Connection()
    if environ.get("TCPREMOTEIP"):
        conn.remote_ip = unmap(environ["TCPREMOTEIP"])
        conn.remote_port = _int(environ.get("TCPREMOTEPORT"))
        conn.remote_host = environ.get("TCPREMOTEHOST", "")
        conn.remote_info = environ.get("TCPREMOTEINFO", "")
        conn.local_ip = unmap(environ.get("TCPLOCALIP", ""))
        conn.local_port = _int(environ.get("TCPLOCALPORT"))
        conn.local_host = environ.get("TCPLOCALHOST", "")
    else:
        peer, local = _socket_addresses(fd)
        if peer:
            conn.remote_ip, conn.remote_port = unmap(peer[0]), peer[1]
        if local:
            conn.local_ip, conn.local_port = unmap(local[0]), local[1]
    # tcprules sets RELAYCLIENT="" for relay clients: presence is what counts.
    conn.relay_client = "RELAYCLIENT" in environ
    return conn


def _socket_addresses(fd: int):
    """(peer, local) addresses of the socket on fd, or (None, None) for a pipe or a unix socket."""
    import _socket

    try:
        sock = _socket.socket(fileno=fd)
    except OSError:
        return None, None
    try:
        peer, local = sock.getpeername(), sock.getsockname()
    except OSError:
        return None, None
    finally:
        sock.detach()  # fd 0 stays open: it is the session
    if not isinstance(peer, tuple):
        return None, None
    return peer[:2], local[:2]


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
