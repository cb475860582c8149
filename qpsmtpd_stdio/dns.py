"""DNS for plugins: one resolver a connection; queries go out at once, in parallel, and are read when needed.

A plugin asks early and reads late:

    from qpsmtpd_stdio import dns

    def hook_connect(plugin, txn):
        ip = plugin.connection.remote_ip
        plugin.listed = dns.resolver(plugin).query(dns.reverse_ip(ip) + ".bl.example", "A")

    def hook_rcpt(plugin, txn, rcpt, params):
        answer = plugin.listed.answer()   # waits only if the reply is not in yet
        if answer.records: ...

Each query is sent when it is asked for, from its own UDP socket (a fresh
source port and a random ID, so a forged reply has to guess both). Waiting for
one answer reads every reply that arrives meanwhile, so all outstanding
queries overlap. The same (name, type) asked twice, by one plugin or by two,
is sent once. A truncated reply is asked again over TCP.

Config files:
  dns_servers  nameservers, one a line: `IP` or `IP PORT` (IPv4 or IPv6).
               Default: the `nameserver` lines of /etc/resolv.conf, else 127.0.0.1.
  dns_timeout  seconds to wait for one server before asking the next (default 5;
               a fraction such as 0.5 is allowed). Each server is asked once,
               a single server twice.
  dns_budget   seconds this connection may spend waiting for DNS, all plugins
               together (default 30). Once spent, every unanswered and every
               later query fails at once as TIMEOUT, so a dead DNS server
               costs at most this, and each plugin takes its temporary-failure
               path.

Why the wire format is spoken here rather than through dnspython: the
process is started per connection, and `import dns.message` costs about 37 ms
(dns.name alone 15 ms), most of a DNS session's budget. Queries and the
answers plugins need (A, AAAA, MX, TXT, PTR, CNAME) are a few dozen lines of
RFC 1035; dnspython is the reference the tests check them against, and
nothing from it is imported here.
"""

from __future__ import annotations

import _socket
import os
import time

from .netlist import parse_ip

NOTE = "dns.resolver"   # connection note holding the connection's Resolver
TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
_TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
# Statuses that are answers; anything else (SERVFAIL, REFUSED, TIMEOUT...) is a temporary failure.
# BADNAME: the name cannot be sent at all (an empty label, over 63 or 253 octets): it cannot exist.
FINAL = frozenset(("NOERROR", "NXDOMAIN", "BADNAME"))
DEFAULT_TIMEOUT = 5.0
DEFAULT_BUDGET = 30.0
EDNS_PAYLOAD = 1232     # the DNS Flag Day 2020 size: no IP fragmentation
RESOLV_CONF = "/etc/resolv.conf"


class Answer:
    """The outcome of one query.

    `status` is the RCODE name (NOERROR, NXDOMAIN, SERVFAIL, REFUSED...), TIMEOUT,
    UNREACHABLE (no server listens), CLOSED (the session ended first), or BADNAME. `records` holds the answers of the asked type, CNAMEs followed:
    addresses as text for A/AAAA, names without the final dot for PTR/CNAME/NS,
    (preference, exchange) for MX (exchange "" is the null MX of RFC 7505),
    and for TXT each record's strings joined (octets as latin-1, so nothing is lost).
    """

    __slots__ = ("name", "rdtype", "status", "records")

    def __init__(self, name: str, rdtype: str, status: str, records: list | None = None) -> None:
        self.name = name
        self.rdtype = rdtype
        self.status = status
        self.records = records or []

    def __repr__(self) -> str:
        return f"<Answer {self.name} {self.rdtype} {self.status} {self.records!r}>"

    @property
    def temporary(self) -> bool:
        """No answer could be had: SERVFAIL, REFUSED, TIMEOUT and the like. Asking later may work."""
        return self.status not in FINAL

    @property
    def void(self) -> bool:
        """Nothing there: NXDOMAIN, or NOERROR with no record of the type (RFC 7208 4.6.4)."""
        return not self.temporary and not self.records


# Names and addresses -------------------------------------------------------
def encode_name(name: str) -> bytes | None:
    """`name` in wire form, or None if it cannot be one (an empty or long label, over 253 octets, bad IDN)."""
    if name.endswith("."):
        name = name[:-1]
    if not name:
        return b"\0"
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    out = bytearray()
    for label in name.split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            return None
        out.append(len(raw))
        out += raw
    if len(out) > 254:  # 255 octets with the root label
        return None
    out.append(0)
    return bytes(out)


def reverse_ip(ip: str) -> str:
    """`4.3.2.1` for 1.2.3.4; 32 reversed nibbles for an IPv6 address (RFC 5782 2.1, 2.4). "" if not an address."""
    packed = parse_ip(ip)
    if packed is None:
        return ""
    if len(packed) == 4:
        return ".".join(str(b) for b in reversed(packed))
    return ".".join(reversed(packed.hex()))


def ptr_name(ip: str) -> str:
    """The PTR name of an address: 4.3.2.1.in-addr.arpa, or the nibbles under ip6.arpa."""
    reverse = reverse_ip(ip)
    if not reverse:
        return ""
    return reverse + (".in-addr.arpa" if reverse.count(".") == 3 else ".ip6.arpa")


# The resolver -----------------------------------------------------------------
def resolver(plugin) -> Resolver:
    """The connection's resolver, made from the config on first use."""
    notes = plugin.connection.notes
    found = notes.get(NOTE)
    if found is None:
        found = notes[NOTE] = Resolver.from_config(plugin.config, plugin.log)
    found.log = plugin.log  # its log lines name the plugin that asked last
    return found


def close(plugin) -> None:
    """Close the connection's outstanding queries (a `disconnect` hook calls this)."""
    found = plugin.connection.notes.get(NOTE)
    if found is not None:
        found.close()


class Resolver:
    def __init__(self, servers: list[tuple[str, int]], timeout: float = DEFAULT_TIMEOUT,
                 budget: float = DEFAULT_BUDGET, log=None) -> None:
        self.servers = servers or [("127.0.0.1", 53)]
        self.timeout = timeout
        self.budget = budget
        self.spent = 0.0          # seconds spent waiting so far
        self.sent = 0             # queries sent (for the log and the tests)
        self.log = log or (lambda level, message: None)
        self._queries: dict[tuple[str, int], Query] = {}
        self._pending: list[Query] = []

    @classmethod
    def from_config(cls, config, log=None) -> Resolver:
        """`config(name)` gives a config file's lines (plugin.config)."""
        servers = []
        for line in config("dns_servers"):
            words = line.split()
            port = int(words[1]) if len(words) > 1 and words[1].isdigit() else 53
            if parse_ip(words[0]) is not None:
                servers.append((words[0], port))
            elif log:
                log(4, f"config dns_servers: not an IP address: {words[0]!r}")
        if not servers:
            servers = system_servers()
        return cls(servers, _seconds(config, "dns_timeout", DEFAULT_TIMEOUT, log),
                   _seconds(config, "dns_budget", DEFAULT_BUDGET, log), log)

    def query(self, name: str, rdtype: str = "A") -> Query:
        """Send a query now (unless the same one is out already); read it later with .answer()."""
        code = TYPES[rdtype.upper()]
        key = (name.lower().rstrip("."), code)
        found = self._queries.get(key)
        if found is None:
            found = self._queries[key] = Query(self, name, code)
            found.start()
        return found

    def lookup(self, name: str, rdtype: str = "A") -> Answer:
        return self.query(name, rdtype).answer()

    def lookup_many(self, questions) -> list[Answer]:
        """Answers to [(name, type), ...], all asked at once."""
        queries = [self.query(name, rdtype) for name, rdtype in questions]
        return [q.answer() for q in queries]

    @property
    def budget_left(self) -> float:
        return self.budget - self.spent

    def close(self, status: str = "CLOSED") -> None:
        """End every outstanding query (CLOSED: the session is over; TIMEOUT: the budget is spent)."""
        for query in list(self._pending):
            query.finish(status)

    # The loop ----------------------------------------------------------
    def wait(self, until: Query | None = None) -> None:
        """Read replies until `until` is answered (None: only what has already arrived)."""
        import select

        while self._pending and (until is None or until._answer is None):
            now = time.monotonic()
            for query in list(self._pending):
                if now >= query.deadline:
                    query.next_attempt()
            if until is not None and until._answer is not None or not self._pending:
                return
            if until is None:
                wait = 0.0
            else:
                if self.budget_left <= 0:
                    self.log(4, f"DNS budget of {self.budget:g}s spent; {len(self._pending)} queries fail as TIMEOUT")
                    self.close("TIMEOUT")
                    return
                wait = max(0.0, min(min(q.deadline for q in self._pending) - now, self.budget_left))
            ready, _, _ = select.select([q.sock for q in self._pending if q.sock is not None], [], [], wait)
            if until is not None:
                self.spent += time.monotonic() - now
            for sock in ready:
                query = next((q for q in self._pending if q.sock is sock), None)
                if query is not None:
                    query.receive()
            if until is None:
                return

    def _tcp(self, server: tuple[str, int], packet: bytes) -> bytes | None:
        """One query over TCP (after a truncated UDP reply), within the time left."""
        started = time.monotonic()
        family = _socket.AF_INET6 if ":" in server[0] else _socket.AF_INET
        sock = _socket.socket(family, _socket.SOCK_STREAM)
        try:
            sock.settimeout(max(0.01, min(self.timeout, self.budget_left)))
            sock.connect(server)
            sock.sendall(len(packet).to_bytes(2, "big") + packet)
            data = b""
            while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
                chunk = sock.recv(65537)
                if not chunk:
                    return None
                data += chunk
            return data[2:2 + int.from_bytes(data[:2], "big")]
        except OSError:
            return None
        finally:
            sock.close()
            self.spent += time.monotonic() - started


class Query:
    """One question, sent over UDP to each server in turn until one answers."""

    def __init__(self, resolver: Resolver, name: str, rdtype: int) -> None:
        self.resolver = resolver
        self.name = name
        self.rdtype = rdtype
        self.wire_name = encode_name(name)
        self.attempt = 0
        self.attempts = max(2, len(resolver.servers))
        self.sock = None
        self.id = 0
        self.deadline = 0.0
        self._answer: Answer | None = None

    def __repr__(self) -> str:
        return f"<Query {self.name} {_TYPE_NAMES.get(self.rdtype, self.rdtype)}>"

    def start(self) -> None:
        if self.wire_name is None:
            return self.finish("BADNAME")
        if self.resolver.budget_left <= 0:
            return self.finish("TIMEOUT")
        self.resolver._pending.append(self)
        self.send()

    def send(self) -> None:
        resolver = self.resolver
        server = resolver.servers[self.attempt % len(resolver.servers)]
        family = _socket.AF_INET6 if ":" in server[0] else _socket.AF_INET
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.id = int.from_bytes(os.urandom(2), "big")
        self.deadline = time.monotonic() + resolver.timeout
        try:
            self.sock = _socket.socket(family, _socket.SOCK_DGRAM)
            self.sock.setblocking(False)
            self.sock.connect(server)
            self.sock.send(self.packet())
            resolver.sent += 1
        except OSError as exc:
            resolver.log(7, f"DNS {self.name}: cannot send to {server[0]}#{server[1]}: {exc}")
            if self.sock is not None:
                self.sock.close()
                self.sock = None
            self.deadline = 0.0  # the loop moves on to the next server

    def packet(self) -> bytes:
        header = self.id.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01"  # RD; 1 question, 1 OPT
        question = self.wire_name + self.rdtype.to_bytes(2, "big") + b"\x00\x01"
        opt = b"\x00\x00\x29" + EDNS_PAYLOAD.to_bytes(2, "big") + b"\x00\x00\x00\x00\x00\x00"
        return header + question + opt

    def next_attempt(self, status: str = "TIMEOUT") -> None:
        self.attempt += 1
        if self.attempt >= self.attempts:
            self.finish(status)
        else:
            self.send()

    def receive(self) -> None:
        try:
            data = self.sock.recv(65535)
        except BlockingIOError:
            return
        except OSError:  # ICMP port unreachable: nobody serves DNS there
            return self.next_attempt("UNREACHABLE")
        parsed = parse_response(data, self.id, self.wire_name, self.rdtype)
        if parsed is None:
            return  # not the reply to this question: keep waiting
        status, records, truncated = parsed
        if truncated:
            server = self.resolver.servers[self.attempt % len(self.resolver.servers)]
            reply = self.resolver._tcp(server, self.packet())
            parsed = parse_response(reply, self.id, self.wire_name, self.rdtype) if reply else None
            if parsed is None:
                return self.next_attempt("TIMEOUT")
            status, records, _ = parsed
        if status not in FINAL:
            return self.next_attempt(status)
        self.finish(status, records)

    def finish(self, status: str, records: list | None = None) -> None:
        self._answer = Answer(self.name, _TYPE_NAMES.get(self.rdtype, str(self.rdtype)), status, records)
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self in self.resolver._pending:
            self.resolver._pending.remove(self)
        if status not in ("NOERROR", "NXDOMAIN", "CLOSED"):
            self.resolver.log(7, f"DNS {self.name} {self._answer.rdtype}: {status}")

    def done(self) -> bool:
        """True once answered; never waits."""
        if self._answer is None:
            self.resolver.wait(None)
        return self._answer is not None

    def answer(self) -> Answer:
        """The answer, waiting for it if need be (never past the connection's DNS budget)."""
        if self._answer is None:
            self.resolver.wait(self)
        return self._answer


def system_servers(path: str = RESOLV_CONF) -> list[tuple[str, int]]:
    servers = []
    try:
        with open(path, encoding="latin-1") as fh:
            for line in fh:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver" and parse_ip(words[1]) is not None:
                    servers.append((words[1], 53))
    except OSError:
        pass
    return servers or [("127.0.0.1", 53)]


def _seconds(config, name: str, default: float, log) -> float:
    lines = config(name)
    if lines:
        try:
            value = float(lines[0].split()[0])
            if value > 0:
                return value
        except (ValueError, IndexError):
            pass
        if log:
            log(4, f"config {name}: not a positive number: {lines[0]!r}; using {default:g}")
    return default


# The wire format (RFC 1035 4.1) ---------------------------------------------
def parse_response(data: bytes, qid: int, wire_name: bytes, rdtype: int):
    """(status, records, truncated) from a reply to (qid, name, type), or None if it is not one."""
    try:
        if len(data) < 12 or int.from_bytes(data[:2], "big") != qid or not data[2] & 0x80:
            return None
        truncated = bool(data[2] & 0x02)
        status = RCODES.get(data[3] & 0x0F, f"RCODE{data[3] & 0x0F}")
        qdcount, ancount = int.from_bytes(data[4:6], "big"), int.from_bytes(data[6:8], "big")
        if qdcount != 1:
            return None
        end = 12 + len(wire_name)
        if data[12:end].lower() != wire_name.lower() or data[end:end + 4] != rdtype.to_bytes(2, "big") + b"\x00\x01":
            return None
        offset = end + 4
        answers = []
        for _ in range(ancount):
            owner, offset = read_name(data, offset)
            rtype = int.from_bytes(data[offset:offset + 2], "big")
            length = int.from_bytes(data[offset + 8:offset + 10], "big")
            start = offset + 10
            offset = start + length
            if offset > len(data):
                raise ValueError("record past the end")
            answers.append((owner.lower(), rtype, start, length))
        return status, _records(data, answers, wire_name, rdtype), truncated
    except (ValueError, IndexError):
        return None


def _records(data: bytes, answers, wire_name: bytes, rdtype: int) -> list:
    """The records of `rdtype` owned by the name asked, or by the CNAME chain that starts there."""
    owners = {read_name(wire_name, 0)[0].lower()}
    for _ in range(8):  # follow CNAMEs (answers may come in any order)
        more = {read_name(data, start)[0].lower() for owner, rtype, start, _ in answers
                if rtype == 5 and owner in owners}
        if more <= owners:
            break
        owners |= more
    records = []
    for owner, rtype, start, length in answers:
        if rtype != rdtype or owner not in owners:
            continue
        rdata = data[start:start + length]
        if rtype == 1 and length == 4:
            records.append(_socket.inet_ntop(_socket.AF_INET, rdata))
        elif rtype == 28 and length == 16:
            records.append(_socket.inet_ntop(_socket.AF_INET6, rdata))
        elif rtype in (2, 5, 12):
            records.append(read_name(data, start)[0])
        elif rtype == 15:
            records.append((int.from_bytes(rdata[:2], "big"), read_name(data, start + 2)[0]))
        elif rtype == 16:
            parts, i = [], 0
            while i < length:
                parts.append(rdata[i + 1:i + 1 + rdata[i]])
                i += 1 + rdata[i]
            records.append(b"".join(parts).decode("latin-1"))
        elif rtype not in (1, 28):
            records.append(rdata)
    return records


def read_name(data: bytes, offset: int) -> tuple[str, int]:
    """(name without the final dot, offset after it), following compression pointers."""
    labels, end, hops = [], None, 0
    while True:
        length = data[offset]
        if length >= 0xC0:
            hops += 1
            if hops > 64:
                raise ValueError("compression loop")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
        elif length == 0:
            return ".".join(labels), end if end is not None else offset + 1
        elif length >= 64:
            raise ValueError("bad label")
        else:
            labels.append(data[offset + 1:offset + 1 + length].decode("latin-1"))
            offset += 1 + length


# DNS lists (RFC 5782): blocklists keyed by an address or a domain -----------------
class DNSList:
    """One line of dnsbl_zones / rhsbl_zones: `zone[=CODES] [message]` or `zone[=CODES]:message`.

    CODES, comma-separated, are the A answers that mean "listed" (`127.0.0.2`,
    `127.0.0.4-7`); without them any answer in 127.0.0.0/8 does, except
    127.255.255.0/24, where lists such as Spamhaus put their error codes. In
    the message, %IP% is the client's address and %ZONE% the zone; without
    one, the list's TXT record is the reason.
    """

    def __init__(self, line: str) -> None:
        head = line.split(None, 1)
        if ":" in head[0]:
            zone, _, message = line.partition(":")
        else:
            zone, message = head[0], (head[1] if len(head) > 1 else "")
        zone, _, codes = zone.strip().partition("=")
        self.zone = zone.strip(".").lower()
        self.message = message.strip()
        self.codes = [c.strip() for c in codes.split(",") if c.strip()]

    def lookup(self, resolver: Resolver, key: str) -> Listing:
        name = f"{key}.{self.zone}"
        return Listing(self, resolver.query(name, "A"), None if self.message else resolver.query(name, "TXT"))

    def listed_by(self, address: str) -> bool:
        if self.codes:
            return any(_code_matches(code, address) for code in self.codes)
        return address.startswith("127.") and not address.startswith("127.255.255.")


class Listing:
    """A DNS list lookup in flight. `.result()`: True (listed), False (not), None (the list did not answer)."""

    def __init__(self, dnslist: DNSList, a: Query, txt: Query | None) -> None:
        self.list = dnslist
        self.a = a
        self.txt = txt

    @property
    def zone(self) -> str:
        return self.list.zone

    def result(self) -> bool | None:
        answer = self.a.answer()
        if answer.temporary:
            return None
        return any(self.list.listed_by(address) for address in answer.records)

    def reason(self, ip: str = "") -> str:
        """The text for the client: the configured message, else the list's TXT record, else a default."""
        if self.list.message:
            text = self.list.message.replace("%IP%", ip).replace("%ZONE%", self.zone)
        else:
            texts = self.txt.answer().records if self.txt is not None else []
            text = "; ".join(texts) or f"Blocked by {self.zone}"
        return printable(text)


def _code_matches(code: str, address: str) -> bool:
    if "-" in code:
        base, _, high = code.rpartition("-")
        prefix, _, low = base.rpartition(".")
        last = address.rpartition(".")
        return (last[0] == prefix and low.isdigit() and high.isdigit() and last[2].isdigit()
                and int(low) <= int(last[2]) <= int(high))
    return address == code


def printable(text: str, limit: int = 300) -> str:
    """Text from DNS made safe for a reply or a header: printable ASCII on one line, bounded."""
    return "".join(c if " " <= c <= "~" else " " for c in text[:limit]).strip()
