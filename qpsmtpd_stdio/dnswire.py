"""DNS messages on the wire (RFC 1035 4.1): building a query, reading a reply. Pure functions, no sockets.

A reply is hostile input (whoever controls or spoofs the resolver writes
it), so reading is bounded: a name is at most 255 octets and 127 labels,
with at most MAX_POINTERS compression pointers, each pointing before the
last; at most MAX_RECORDS answers are read; each is decoded once, and a
CNAME chain is followed for at most MAX_CNAMES links. The work per reply is
then linear in its size. What is refused and what is read agrees with
dnspython (tests/unit/test_dnswire.py, fuzz/dnsdiff.py).
"""

import _socket

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
EDNS_PAYLOAD = 1232     # the DNS Flag Day 2020 size: no IP fragmentation
MAX_NAME = 255          # octets of a name on the wire, root label included (RFC 1035 2.3.4)
MAX_POINTERS = 16       # compression pointers followed in one name (dnspython's bound too)
MAX_RECORDS = 256       # answer records read from one reply; more is not an answer we use
MAX_CNAMES = 8          # links of a CNAME chain followed


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
    if len(out) >= MAX_NAME:  # 255 octets with the root label
        return None
    out.append(0)
    return bytes(out)


def query_packet(qid: int, wire_name: bytes, rdtype: int) -> bytes:
    """A recursive query for (name, type), with an EDNS0 OPT record offering EDNS_PAYLOAD octets."""
    header = qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01"  # RD; 1 question, 1 OPT
    question = wire_name + rdtype.to_bytes(2, "big") + b"\x00\x01"
    opt = b"\x00\x00\x29" + EDNS_PAYLOAD.to_bytes(2, "big") + b"\x00\x00\x00\x00\x00\x00"
    return header + question + opt


def parse_response(data: bytes, qid: int, wire_name: bytes, rdtype: int):
    """(status, records, truncated) from a reply to (qid, name, type), or None if it is not one.

    Every answer of a type read here is decoded, once, and a malformed one
    (an A record of 5 octets, a name that overruns its record) refuses the
    whole reply, as dnspython does: no half-read answers.
    """
    try:
        if len(data) < 12 or int.from_bytes(data[:2], "big") != qid or data[2] & 0xF8 != 0x80:
            return None  # not a reply (QR) to a standard query (opcode 0)
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
        for _ in range(min(ancount, MAX_RECORDS)):
            owner, offset = read_name(data, offset)
            rtype, rclass = int.from_bytes(data[offset:offset + 2], "big"), data[offset + 2:offset + 4]
            length = int.from_bytes(data[offset + 8:offset + 10], "big")
            start = offset + 10
            offset = start + length
            if offset > len(data):
                raise ValueError("record past the end")
            if rclass == b"\x00\x01":  # records of another class answer another question
                answers.append((owner.lower(), rtype, _rdata(data, rtype, start, length)))
        return status, _records(answers, read_name(wire_name, 0)[0].lower(), rdtype), truncated
    except (ValueError, IndexError):
        return None


def _rdata(data: bytes, rtype: int, start: int, length: int):
    """The value of one record: text for A/AAAA/names/TXT, (preference, name) for MX, bytes otherwise."""
    end = start + length
    if rtype in (1, 28):
        if length != (4 if rtype == 1 else 16):
            raise ValueError("bad address length")
        return _socket.inet_ntop(_socket.AF_INET if rtype == 1 else _socket.AF_INET6, data[start:end])
    if rtype in (2, 5, 12, 15):
        skip = 2 if rtype == 15 else 0
        if length < skip + 1:
            raise ValueError("record too short")
        name, after = read_name(data, start + skip)
        if after != end:
            raise ValueError("name does not fill its record")
        return (int.from_bytes(data[start:start + 2], "big"), name) if rtype == 15 else name
    if rtype == 16:
        parts, i = [], start
        while i < end:
            size = data[i]
            if i + 1 + size > end:
                raise ValueError("string past its record")
            parts.append(data[i + 1:i + 1 + size])
            i += 1 + size
        if not parts:
            raise ValueError("TXT record without a string")
        return b"".join(parts).decode("latin-1")
    return data[start:end]


def _records(answers: list, qname: str, rdtype: int) -> list:
    """The values of `rdtype` owned by the name asked, or by the CNAME chain that starts there."""
    aliases = {owner: value.lower() for owner, rtype, value in answers if rtype == 5}
    owners = {qname}
    name = qname
    for _ in range(MAX_CNAMES):  # answers may come in any order
        name = aliases.get(name)
        if name is None or name in owners:
            break
        owners.add(name)
    return [value for owner, rtype, value in answers if rtype == rdtype and owner in owners]


def read_name(data: bytes, offset: int) -> tuple[str, int]:
    """(name without the final dot, offset after it), following compression pointers.

    Raises ValueError past 255 octets or MAX_POINTERS pointers, at a pointer
    that does not point before the previous one (or, the first, before the
    name), or where the part pointed at runs into the part that pointed:
    dnspython's rules, which make loops and overlaps impossible.
    """
    labels, end, pointers, size, floor, limit = [], None, 0, 1, offset, len(data)
    while True:
        if offset >= limit:
            raise ValueError("name past its end")
        length = data[offset]
        if length >= 0xC0:
            if offset + 1 >= limit:
                raise ValueError("name past its end")
            target = ((length & 0x3F) << 8) | data[offset + 1]
            pointers += 1
            if pointers > MAX_POINTERS or target >= floor:
                raise ValueError("bad compression pointer")
            if end is None:
                end = offset + 2
            offset, floor, limit = target, target, floor
        elif length == 0:
            return ".".join(labels), end if end is not None else offset + 1
        elif length >= 64:
            raise ValueError("bad label")
        else:
            size += 1 + length
            if size > MAX_NAME or offset + 1 + length > limit:
                raise ValueError("name too long or past its end")
            labels.append(data[offset + 1:offset + 1 + length].decode("latin-1"))
            offset += 1 + length
