"""Our DNS reader against dnspython's, on the same bytes: used by tests/unit/test_dnswire.py and fuzz_dnswire.py.

Both must refuse or accept the same names and replies, and read the same
values. Out of scope, because we do not read them at all: the authority and
additional sections, records of another class or of a type we never ask for,
more than MAX_RECORDS answers, and two CNAMEs for one name (no answer to
agree on). Packets that are not a reply to our query (ID, QR, opcode, the
question) are refused by us; dnspython has no opinion on that.
"""

from __future__ import annotations

import ipaddress

import dns.exception
import dns.message
import dns.name

from qpsmtpd_stdio import dnswire as wire

QNAME = "a.test"
DECODED = {1, 2, 5, 12, 15, 16, 28}


def ours_name(data: bytes, offset: int):
    try:
        return wire.read_name(data, offset)
    except (ValueError, IndexError):
        return None


def theirs_name(data: bytes, offset: int):
    try:
        name, used = dns.name.from_wire(data, offset)
    except (dns.exception.DNSException, IndexError):
        return None
    return b".".join(name.labels[:-1]).decode("latin-1"), offset + used


def compare_name(data: bytes, offset: int) -> None:
    assert ours_name(data, offset) == theirs_name(data, offset), (data.hex(), offset)


def _answer_walk(data: bytes):
    """(class, type) of each answer, found with our own name reader; None where the packet is cut short."""
    try:
        offset = 12 + len(wire.encode_name(QNAME)) + 4
        found = []
        for _ in range(int.from_bytes(data[6:8], "big")):
            offset = wire.read_name(data, offset)[1]
            found.append((int.from_bytes(data[offset + 2:offset + 4], "big"), int.from_bytes(data[offset:offset + 2], "big")))
            offset += 10 + int.from_bytes(data[offset + 8:offset + 10], "big")
        return found
    except (ValueError, IndexError):
        return None


def _value(rdata):
    kind = rdata.rdtype
    if kind in (1, 28):
        return ipaddress.ip_address(rdata.address)
    if kind == 15:
        return rdata.preference, b".".join(rdata.exchange.labels[:-1]).decode("latin-1")
    if kind == 16:
        return b"".join(rdata.strings).decode("latin-1")
    return b".".join(rdata.target.labels[:-1]).decode("latin-1")


def _theirs_reply(data: bytes, qtype: int):
    """What dnspython reads in the header, question and answers, resolved as our resolver does; or "ambiguous"."""
    only_answers = bytearray(data)
    only_answers[8:12] = bytes(4)  # the sections we do not read
    try:
        message = dns.message.from_wire(bytes(only_answers), ignore_trailing=True)
    except (dns.exception.DNSException, IndexError, ValueError, UnicodeError):
        return None
    aliases = {}
    for rrset in message.answer:
        if rrset.rdtype == 5:
            if len(rrset) != 1:
                return "ambiguous"
            aliases[rrset.name] = rrset[0].target
    owners, name = {dns.name.from_text(QNAME)}, dns.name.from_text(QNAME)
    for _ in range(wire.MAX_CNAMES):
        name = aliases.get(name)
        if name is None or name in owners:
            break
        owners.add(name)
    values = {_value(r) for rrset in message.answer if rrset.rdtype == qtype and rrset.name in owners for r in rrset}
    return wire.RCODES.get(message.rcode(), f"RCODE{message.rcode()}"), values, bool(message.flags & 0x0200)


def compare_reply(data: bytes, qtype: int) -> str:
    """Raise AssertionError where the two readers disagree; else say what happened (for statistics)."""
    ours = wire.parse_response(data, 7, wire.encode_name(QNAME), qtype)
    question = wire.encode_name(QNAME) + qtype.to_bytes(2, "big") + b"\x00\x01"
    if (len(data) < 12 or data[:2] != b"\x00\x07" or data[2] & 0xF8 != 0x80 or data[4:6] != b"\x00\x01"
            or data[12:12 + len(question)].lower() != question):
        assert ours is None, data.hex()
        return "not a reply to the query"
    walk = _answer_walk(data)
    if walk and not all(c == 1 and t in DECODED for c, t in walk) or int.from_bytes(data[6:8], "big") > wire.MAX_RECORDS:
        return "out of scope"
    theirs = _theirs_reply(data, qtype)
    if theirs == "ambiguous":
        return "out of scope"
    if ours is None or theirs is None:
        assert ours is None and theirs is None, (data.hex(), ours, theirs)
        return "both refuse"
    status, records, truncated = ours
    records = {ipaddress.ip_address(r) if qtype in (1, 28) else r for r in records}
    assert (status, records, truncated) == theirs, data.hex()
    return "both read"
