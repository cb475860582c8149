"""The connection: who is calling, as plugins see it in `plugin.connection`.

`identify()` builds it from what the superserver hands over (tcpserver's
TCPREMOTEIP and friends, else the socket on fd 0), without DNS lookups. The
client's address is canonical from then on (netlist.canonical_ip), whoever
sets it: this module, a PROXY header (session.py) or XCLIENT (xclient.py).
"""

import time

from .digits import number
from .netlist import canonical_ip
from .transaction import new_id

TYPE_CHECKING = False  # collections.abc costs ~2 ms of imports per connection
if TYPE_CHECKING:
    from collections.abc import Mapping


class Connection:
    def __init__(self) -> None:
        self.remote_ip = ""
        self.remote_port = 0
        self.remote_host = ""   # from TCPREMOTEHOST; the core never does a PTR lookup
        self.remote_info = ""   # from TCPREMOTEINFO (ident)
        self.local_ip = ""
        self.local_port = 0
        self.local_host = ""
        self.relay_client = False
        self.hello = ""          # "helo" or "ehlo"
        self.hello_host = ""
        self.esmtp = False
        self.tls = None          # tls.TLSInfo (version, cipher, bits), once TLS is on
        self.auth_user = None    # after a successful AUTH
        self.auth_mechanism = None  # PLAIN, LOGIN, CRAM-MD5
        self.capabilities: list[str] = []  # ehlo hooks append extensions to advertise
        self.notes: dict = {}
        self.id = new_id()
        self.started = time.time()

    def set_client(self, ip: str, port: int, host: str = "", info: str = "") -> None:
        """Who the client is, from tcpserver, the socket, a PROXY header or XCLIENT.

        The address is stored canonical ("" if it is not one). What was known
        about an earlier peer (its name, ident, relay rights) is not about this
        one, so relaying is decided afresh by the connect hooks.
        """
        self.remote_ip, self.remote_port = canonical_ip(ip), port
        self.remote_host, self.remote_info = host, info
        self.relay_client = False

    def set_local(self, ip: str, port: int, host: str = "") -> None:
        """The address the client connected to."""
        self.local_ip, self.local_port, self.local_host = canonical_ip(ip), port, host

    @property
    def remote_label(self) -> str:
        """How a log line names the client: `host[ip]:port`."""
        return f"{self.remote_host or 'unknown'}[{self.remote_ip}]:{self.remote_port}"


def identify(environ: "Mapping[str, str]", fd: int = 0) -> "Connection":
    """The connection as the superserver handed it over: tcpserver's variables if set, else the socket on `fd`."""
    conn = Connection()
    if environ.get("TCPREMOTEIP"):
        conn.set_client(environ["TCPREMOTEIP"], _int(environ.get("TCPREMOTEPORT")),
                        environ.get("TCPREMOTEHOST", ""), environ.get("TCPREMOTEINFO", ""))
        conn.set_local(environ.get("TCPLOCALIP", ""), _int(environ.get("TCPLOCALPORT")), environ.get("TCPLOCALHOST", ""))
    else:
        peer, local = _socket_addresses(fd)
        if peer:
            conn.set_client(*peer)
        if local:
            conn.set_local(*local)
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
    return number(text, 65535) or 0
