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

The wire format is dnswire.py, and DNS block lists are dnslist.py. Why
the wire format is spoken here rather than through dnspython: the
process is started per connection, and `import dns.message` costs about 37 ms
(dns.name alone 15 ms), most of a DNS session's budget. Queries and the
answers plugins need (A, AAAA, MX, TXT, PTR, CNAME) are a few dozen lines of
RFC 1035; dnspython is the reference the tests check them against, and
nothing from it is imported here.
"""

import _socket
import os
import time

from .digits import number
from .dnswire import TYPE_NAMES, TYPES, encode_name, parse_response, query_packet
from .netlist import parse_ip

NOTE = "dns.resolver"   # connection note holding the connection's Resolver
# Statuses that are answers; anything else (SERVFAIL, REFUSED, TIMEOUT...) is a temporary failure.
# BADNAME: the name cannot be sent at all (an empty label, over 63 or 253 octets): it cannot exist.
FINAL = frozenset(("NOERROR", "NXDOMAIN", "BADNAME"))
DEFAULT_TIMEOUT = 5.0
DEFAULT_BUDGET = 30.0
MAX_TIMEOUT = 60.0  # a plugin's `timeout` argument beyond this is taken as this
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


# Names for addresses -------------------------------------------------------
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
def resolver(plugin) -> "Resolver":
    """The connection's resolver, made from the config on first use.

    A plugin's own `timeout N` argument (qpsmtpd's, on dnsbl, fcrdns, helo...)
    sets how long each of its queries waits for one server; dns_budget still
    bounds them all.
    """
    notes = plugin.connection.notes
    found = notes.get(NOTE)
    if found is None:
        found = notes[NOTE] = Resolver.from_config(plugin.config, plugin.log)
    found.log = plugin.log  # its log lines name the plugin that asked last
    found.query_timeout = _argument_seconds(plugin.args, found.timeout)
    return found


def _argument_seconds(args: list[str], default: float) -> float:
    for key, value in zip(args, args[1:]):
        if key.lower() == "timeout":
            digits = value.replace(".", "", 1)
            seconds = float(value) if digits.isascii() and digits.isdigit() and len(value) < 10 else 0.0
            return min(seconds, MAX_TIMEOUT) if seconds > 0 else default
    return default


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
        self.query_timeout = timeout  # for the next queries: the asking plugin's `timeout`, else dns_timeout
        self.budget = budget
        self.spent = 0.0          # seconds spent on DNS so far: waiting, and reading replies
        self.waited = 0.0         # of which blocked in select() for an answer a plugin asked for
        self.sent = 0             # queries sent (for the log and the tests)
        self.log = log or (lambda level, message: None)
        self._queries: dict[tuple[str, int], Query] = {}
        self._pending: list[Query] = []

    @classmethod
    def from_config(cls, config, log=None) -> "Resolver":
        """`config(name)` gives a config file's lines (plugin.config)."""
        servers = []
        for line in config("dns_servers"):
            words = line.split()
            port = (number(words[1], 65535) if len(words) > 1 else None) or 53
            if parse_ip(words[0]) is not None:
                servers.append((words[0], port))
            elif log:
                log(4, f"config dns_servers: not an IP address: {words[0]!r}")
        if not servers:
            servers = system_servers()
        return cls(servers, _seconds(config, "dns_timeout", DEFAULT_TIMEOUT, log),
                   _seconds(config, "dns_budget", DEFAULT_BUDGET, log), log)

    def query(self, name: str, rdtype: str = "A") -> "Query":
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
    def wait(self, until: "Query | None" = None) -> None:
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
                self.waited += time.monotonic() - now
            for sock in ready:
                query = next((q for q in self._pending if q.sock is sock), None)
                if query is not None:
                    query.receive()
            if until is not None or ready:
                self.spent += time.monotonic() - now  # reading replies counts too: a hostile one costs CPU
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

    def __init__(self, resolver: "Resolver", name: str, rdtype: int) -> None:
        self.resolver = resolver
        self.name = name
        self.rdtype = rdtype
        self.wire_name = encode_name(name)
        self.attempt = 0
        self.attempts = max(2, len(resolver.servers))
        self.timeout = resolver.query_timeout
        self.sock = None
        self.id = 0
        self.deadline = 0.0
        self._answer: Answer | None = None

    def __repr__(self) -> str:
        return f"<Query {self.name} {TYPE_NAMES.get(self.rdtype, self.rdtype)}>"

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
        self.deadline = time.monotonic() + self.timeout
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
        return query_packet(self.id, self.wire_name, self.rdtype)

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
        self._answer = Answer(self.name, TYPE_NAMES.get(self.rdtype, str(self.rdtype)), status, records)
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


def printable(text: str, limit: int = 300) -> str:
    """Text from DNS made safe for a reply or a header: printable ASCII on one line, bounded."""
    return "".join(c if " " <= c <= "~" else " " for c in text[:limit]).strip()
