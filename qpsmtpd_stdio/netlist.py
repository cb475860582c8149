"""IP addresses and address lists: one parse for the client's address, one matcher for every list.

An address is canonical from the moment it is known: `canonical_ip()` gives
IPv4 in dotted form (an IPv4-mapped IPv6 address such as `::ffff:10.0.0.1`
becomes `10.0.0.1`) and IPv6 in RFC 5952 form. Lists (relayclients,
proxy_clients, xclient_clients, dnsbl_allow...) are matched by `NetList`,
whose entries are, one a line (anything after the first word is a comment):

    192.0.2.7  2001:db8::7           one address, in any spelling
    192.168.   10.                   an IPv4 prefix of whole octets
    2001:db8:  2001:0db8:            an IPv6 prefix, of the short or the full form
    10.0.0.0/8  2001:db8::/32        a CIDR block

Only `_socket` is imported: `ipaddress` costs every connection a few
milliseconds, and this is all the core needs of it.
"""

import _socket

TYPE_CHECKING = False  # collections.abc costs ~2 ms of imports per connection
if TYPE_CHECKING:
    from collections.abc import Iterable

_MAPPED = b"\0" * 10 + b"\xff\xff"


def parse_ip(text: str) -> bytes | None:
    """4 or 16 packed octets for an IPv4 or IPv6 address (an IPv4-mapped IPv6 address gives 4), else None."""
    try:
        if ":" in text:
            packed = _socket.inet_pton(_socket.AF_INET6, text)
            return packed[12:] if packed[:12] == _MAPPED else packed
        return _socket.inet_pton(_socket.AF_INET, text)
    except (OSError, ValueError):
        return None


def ip_text(packed: bytes) -> str:
    """The canonical text of a packed address."""
    return _socket.inet_ntop(_socket.AF_INET if len(packed) == 4 else _socket.AF_INET6, packed)


def canonical_ip(text: str) -> str:
    """`text` as the one spelling every part of the server uses, or "" if it is not an IP address."""
    packed = parse_ip(text.strip())
    return "" if packed is None else ip_text(packed)


def exploded(packed: bytes) -> str:
    """The full form of an IPv6 address (2001:0db8:0000:...); IPv4 unchanged."""
    if len(packed) == 4:
        return ip_text(packed)
    return ":".join(packed[i:i + 2].hex() for i in range(0, 16, 2))


def in_network(packed: bytes, network: bytes, prefix: int) -> bool:
    """True if address `packed` is in network/prefix (both packed, same family)."""
    if len(packed) != len(network):
        return False
    bits = len(packed) * 8
    if prefix <= 0:
        return True
    shift = bits - min(prefix, bits)
    return int.from_bytes(packed, "big") >> shift == int.from_bytes(network, "big") >> shift


def parse_network(text: str) -> tuple[bytes, int] | None:
    """`192.0.2.0/24`, `2001:db8::/32` or a bare address as (packed, prefix), else None."""
    addr, _, bits = text.partition("/")
    packed = parse_ip(addr)
    if packed is None:
        return None
    if not bits:
        return packed, len(packed) * 8
    if not (bits.isascii() and bits.isdigit()) or int(bits) > len(packed) * 8:
        return None
    return packed, int(bits)


def _ipv4_prefix(entry: str) -> tuple[bytes, int] | None:
    """`192.168.` as (192.168.0.0, 16); None unless 1 to 3 whole octets."""
    octets = entry[:-1].split(".")
    if not 1 <= len(octets) <= 3 or not all(o.isascii() and o.isdigit() and int(o) <= 255 for o in octets):
        return None
    return bytes(int(o) for o in octets) + bytes(4 - len(octets)), 8 * len(octets)


class NetList:
    """A parsed address list; `ip in netlist` for a client address. Unparsable entries are kept in `.bad`."""

    __slots__ = ("networks", "prefixes", "bad")

    def __init__(self, entries: "Iterable[str]") -> None:
        self.networks: list[tuple[bytes, int]] = []
        self.prefixes: list[str] = []   # IPv6 text prefixes, lower case
        self.bad: list[str] = []
        for line in entries:
            words = line.split()
            if not words:
                continue
            entry = words[0].lower()
            if entry.endswith(":") and "/" not in entry:
                self.prefixes.append(entry)
                continue
            network = _ipv4_prefix(entry) if entry.endswith(".") else parse_network(entry)
            if network is None:
                self.bad.append(line)
            else:
                self.networks.append(network)

    def __contains__(self, ip: object) -> bool:
        packed = parse_ip(ip) if isinstance(ip, str) else None
        if packed is None:
            return False
        if any(in_network(packed, net, bits) for net, bits in self.networks):
            return True
        if self.prefixes and len(packed) == 16:
            forms = (ip_text(packed), exploded(packed))
            return any(form.startswith(prefix) for prefix in self.prefixes for form in forms)
        return False

    def __bool__(self) -> bool:
        return bool(self.networks or self.prefixes)
