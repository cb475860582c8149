"""The PROXY protocol header (HAProxy's spec, versions 1 and 2): a sans-I/O parser, and the session's use of it.

A proxy (HAProxy `send-proxy`/`send-proxy-v2`, nginx, stunnel) sends one
header before anything else, saying who its client is. `parse()` is given the
octets received so far and answers None (need more), or the header and how
many octets it used; what follows belongs to SMTP. Anything malformed raises
ProxyError: the spec says to close the connection then, never to guess.

Only the addresses are used, in netlist.canonical_ip's form (so a mapped
`::ffff:10.0.0.1` is `10.0.0.1`), and of v2's TLVs only PP2_TYPE_SSL: a
client that reached the proxy over TLS (HAProxy `send-proxy-v2-ssl`) counts
as encrypted for AUTH (note `proxy_tls`, its TLS version or "TLS"). A LOCAL (v2) or UNKNOWN (v1)
header means the proxy speaks for itself (a health check): the addresses stay
as they were.
"""

from .digits import number
from .constants import LOGINFO
from .netlist import NetList, canonical_ip, ip_text, parse_ip

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107  # octets of a v1 line, CRLF included (spec 2.1)

# v2 address families (high nibble of octet 13) -> address octets
_V2_FAMILIES = {0x1: 4, 0x2: 16}


class ProxyError(Exception):
    """Not a valid PROXY header."""


class ProxyHeader:
    """`local` is true for LOCAL/UNKNOWN: no addresses. Else the client's and the proxy's listening address."""

    __slots__ = ("version", "local", "src_ip", "src_port", "dst_ip", "dst_port", "tls")

    def __init__(self, version: int, local: bool, src_ip: str = "", src_port: int = 0, dst_ip: str = "",
                 dst_port: int = 0, tls: str = "") -> None:
        self.tls = tls  # "" or the client's TLS version at the proxy (v2 PP2_TYPE_SSL)
        self.version = version
        self.local = local
        self.src_ip = src_ip
        self.src_port = src_port
        self.dst_ip = dst_ip
        self.dst_port = dst_port

    def __repr__(self) -> str:
        if self.local:
            return f"ProxyHeader(v{self.version}, local)"
        return f"ProxyHeader(v{self.version}, {self.src_ip}:{self.src_port} -> {self.dst_ip}:{self.dst_port})"


def parse(buf: bytes) -> tuple[ProxyHeader, int] | None:
    """(header, octets used) if `buf` starts with a complete header; None if it may still become one."""
    n = min(len(buf), len(V2_SIGNATURE))
    if buf[:n] == V2_SIGNATURE[:n]:
        return _parse_v2(buf) if len(buf) >= 16 else None
    n = min(len(buf), len(V1_PREFIX))
    if buf[:n] == V1_PREFIX[:n]:
        return _parse_v1(buf)
    raise ProxyError("no PROXY header")


def _parse_v1(buf: bytes) -> tuple[ProxyHeader, int] | None:
    end = buf.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(buf) >= V1_MAX or b"\n" in buf[:V1_MAX]:
            raise ProxyError("v1 header too long or not ended by CRLF")
        return None
    words = buf[:end].split(b" ")
    if len(words) >= 2 and words[1] == b"UNKNOWN":
        return ProxyHeader(1, True), end + 2  # the rest of the line is to be ignored (spec 2.1)
    if len(words) != 6 or words[1] not in (b"TCP4", b"TCP6"):
        raise ProxyError("bad v1 header")
    src, dst = (_ip(words[1] == b"TCP4", w.decode("ascii", "replace")) for w in words[2:4])
    sport, dport = (_port(w) for w in words[4:6])
    return ProxyHeader(1, False, src, sport, dst, dport), end + 2


def _parse_v2(buf: bytes) -> tuple[ProxyHeader, int] | None:
    version, command = buf[12] >> 4, buf[12] & 0xF
    if version != 2 or command not in (0, 1):
        raise ProxyError(f"bad v2 version/command octet {buf[12]:#x}")
    length = 16 + int.from_bytes(buf[14:16], "big")
    if len(buf) < length:
        return None
    family, transport = buf[13] >> 4, buf[13] & 0xF
    if command == 0 or family not in _V2_FAMILIES or transport != 1:
        return ProxyHeader(2, True), length  # LOCAL, or not TCP over IP (unix sockets, UDP): no address to use
    size = _V2_FAMILIES[family]
    if length < 16 + 2 * size + 4:
        raise ProxyError("v2 address block too short")
    src, dst = canonical_ip(ip_text(buf[16:16 + size])), canonical_ip(ip_text(buf[16 + size:16 + 2 * size]))
    ports = buf[16 + 2 * size:16 + 2 * size + 4]
    tls = _ssl_tlv(buf[16 + 2 * size + 4:length])
    return ProxyHeader(2, False, src, int.from_bytes(ports[:2], "big"), dst, int.from_bytes(ports[2:], "big"),
                       tls), length


PP2_TYPE_SSL, PP2_SUBTYPE_SSL_VERSION, PP2_CLIENT_SSL = 0x20, 0x21, 0x01


def _ssl_tlv(tlvs: bytes) -> str:
    """The client's TLS version from a PP2_TYPE_SSL TLV whose client field has PP2_CLIENT_SSL ("TLS" if unnamed)."""
    i = 0
    while i + 3 <= len(tlvs):
        kind, size = tlvs[i], int.from_bytes(tlvs[i + 1:i + 3], "big")
        value = tlvs[i + 3:i + 3 + size]
        if len(value) < size:
            raise ProxyError("v2 TLV past the header's end")
        if kind == PP2_TYPE_SSL and size >= 5 and value[0] & PP2_CLIENT_SSL:
            j = 5
            while j + 3 <= len(value):
                sub, sub_size = value[j], int.from_bytes(value[j + 1:j + 3], "big")
                if sub == PP2_SUBTYPE_SSL_VERSION:
                    name = value[j + 3:j + 3 + sub_size].decode("ascii", "replace")
                    return "".join(c for c in name if c.isalnum() or c in ".-_")[:16] or "TLS"
                j += 3 + sub_size
            return "TLS"
        i += 3 + size
    return ""


def _ip(ipv4: bool, text: str) -> str:
    # TCP4 takes dotted quads only, TCP6 colon forms only (spec 2.1); either way the canonical form is kept.
    if (":" in text) == ipv4 or parse_ip(text) is None:
        raise ProxyError(f"bad address {text!r}")
    return canonical_ip(text)


def _port(word: bytes) -> int:
    # Spec 2.1: decimal, no leading zero, 0-65535.
    port = number(word, 65535, digits=5)
    if port is None or (word[:1] == b"0" and word != b"0"):
        raise ProxyError(f"bad port {word!r}")
    return port


# The session's side ---------------------------------------------------------
def receive(session) -> None:
    """From a peer in config `proxy_clients`, read the PROXY header (v1 or v2) before the greeting.

    Only a listed peer is waited for: anyone else gets the greeting at once,
    and a PROXY line from them is an unknown command. A listed peer must send
    a valid header; without one ProxyError is raised, and the session closes
    with no reply (the HAProxy spec: never guess).
    """
    from .transport import ClientGone

    conn = session.connection
    if conn.remote_ip not in NetList(session.config.get("proxy_clients")):
        return
    received = b""
    while (parsed := parse(received)) is None:
        data = session.read()
        if not data:
            raise ClientGone(f"{conn.remote_label} closed before its PROXY header")
        received += data
    header, used = parsed
    if received[used:]:
        session.proto.receive_data(received[used:])
    if header.local:
        session.log(LOGINFO, f"PROXY v{header.version} header from {conn.remote_label} without a client address")
        return
    proxy = conn.remote_label
    # What tcpserver said about the proxy (its name, ident, RELAYCLIENT) is not about the client.
    conn.set_client(header.src_ip, header.src_port)
    conn.set_local(header.dst_ip, header.dst_port)
    conn.notes["proxy"] = proxy
    if header.tls:
        conn.notes["proxy_tls"] = header.tls
    session.client_changed(f"PROXY v{header.version} from {proxy}")
