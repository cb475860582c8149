"""DNS lists (RFC 5782): block and allow lists keyed by an address or a domain, for dnsbl and rhsbl."""

from .digits import number
from .dns import Query, Resolver, printable


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

    def lookup(self, resolver: Resolver, key: str) -> "Listing":
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
        low, high, found = number(low, 255), number(high, 255), number(last[2], 255)
        return last[0] == prefix and None not in (low, high, found) and low <= found <= high
    return address == code
