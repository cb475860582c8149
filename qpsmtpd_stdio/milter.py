"""The Sendmail milter protocol (version 6), MTA side: packets to send, and a reader of the milter's replies.

Sans-I/O, as protocol.py: `packet()` and the `*_packet` helpers return
bytes, and `Reader` turns received bytes (fed in any pieces) into `Reply`
objects; milterclient.py owns the sockets and the timeouts.

A packet is a 4-octet big-endian length, then one command octet, then the
data. Every reply from a milter is bounded: a packet longer than MAX_PACKET
(the 1 MiB that SMFIP_MDS_1M allows, plus room) is an error, and so is a
reply that is malformed for its command.
"""

import struct

VERSION = 6
MAX_PACKET = (1 << 20) + 1024
BODY_CHUNK = 65535  # the most body one SMFIC_BODY may carry unless a bigger size was negotiated

# MTA -> milter commands
ABORT, BODY, CONNECT, MACRO, EOB, HELO, QUIT_NC, HEADER, MAIL, EOH, OPTNEG, QUIT, RCPT, DATA, UNKNOWN = (
    b"A", b"B", b"C", b"D", b"E", b"H", b"K", b"L", b"M", b"N", b"O", b"Q", b"R", b"T", b"U")

# milter -> MTA replies
ADDRCPT, DELRCPT, ADDRCPT_PAR, SHUTDOWN, ACCEPT, REPLBODY, CONTINUE, DISCARD, CHGFROM, CONN_FAIL, ADDHEADER, \
    INSHEADER, SETSYMLIST, CHGHEADER, PROGRESS, QUARANTINE, REJECT, SKIP, TEMPFAIL, REPLYCODE, OPTNEG_REPLY = (
        b"+", b"-", b"2", b"4", b"a", b"b", b"c", b"d", b"e", b"f", b"h", b"i", b"l", b"m", b"p", b"q", b"r", b"s",
        b"t", b"y", b"O")
# Replies that end a stage (the others are changes, sent only after end of body, or "still working").
VERDICTS = {ACCEPT, CONTINUE, DISCARD, REJECT, TEMPFAIL, REPLYCODE, SKIP, SHUTDOWN, CONN_FAIL}

# Actions the MTA allows (SMFIF_*)
ADDHDRS, CHGBODY, ADDRCPT_ACT, DELRCPT_ACT, CHGHDRS, QUARANTINE_ACT, CHGFROM_ACT, ADDRCPT_PAR_ACT, SETSYMLIST_ACT = (
    0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100)
ALL_ACTIONS = 0x1FF

# Protocol steps (SMFIP_*)
P_NOCONNECT, P_NOHELO, P_NOMAIL, P_NORCPT, P_NOBODY, P_NOHDRS, P_NOEOH, P_NR_HDR, P_NOUNKNOWN, P_NODATA, P_SKIP, \
    P_RCPT_REJ, P_NR_CONN, P_NR_HELO, P_NR_MAIL, P_NR_RCPT, P_NR_DATA, P_NR_UNKN, P_NR_EOH, P_NR_BODY, \
    P_HDR_LEADSPC = (1 << i for i in range(21))
# What this MTA can do: skip stages, take "no reply" for any, send headers with their leading space.
MTA_PROTOCOL = (1 << 21) - 1


class MilterError(Exception):
    """The milter broke the protocol (a bad or oversized packet, an unknown reply)."""


def packet(command: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + command + data


def _strings(*values: str | bytes) -> bytes:
    """NUL-terminated strings; a NUL inside a value cannot occur (the core refuses them) but is cut all the same."""
    out = b""
    for value in values:
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        out += raw.split(b"\0", 1)[0] + b"\0"
    return out


def optneg_packet(actions: int = ALL_ACTIONS, protocol: int = MTA_PROTOCOL) -> bytes:
    return packet(OPTNEG, struct.pack(">III", VERSION, actions, protocol))


def macro_packet(stage: bytes, macros: dict[str, str]) -> bytes:
    """The macros for the stage whose command is `stage` (CONNECT, HELO, MAIL, RCPT, DATA, EOH, EOB)."""
    return packet(MACRO, stage + b"".join(_strings(name, value) for name, value in macros.items()))


def connect_packet(hostname: str, ip: str, port: int) -> bytes:
    if not ip:
        return packet(CONNECT, _strings(hostname) + b"U")  # family unknown: no port, no address
    family = b"6" if ":" in ip else b"4"
    return packet(CONNECT, _strings(hostname) + family + struct.pack(">H", port & 0xFFFF) + _strings(ip))


def helo_packet(name: str) -> bytes:
    return packet(HELO, _strings(name))


def mail_packet(address: str, *params: str) -> bytes:
    return packet(MAIL, _strings(address, *params))


def rcpt_packet(address: str, *params: str) -> bytes:
    return packet(RCPT, _strings(address, *params))


def header_packet(name: str | bytes, value: str | bytes) -> bytes:
    return packet(HEADER, _strings(name, value))


def body_packets(data: bytes, chunk: int = BODY_CHUNK):
    for i in range(0, len(data), chunk):
        yield packet(BODY, data[i:i + chunk])


class Reply:
    """One reply packet: `command` (one of the reply constants) and its decoded fields."""

    __slots__ = ("command", "data", "fields")

    def __init__(self, command: bytes, data: bytes) -> None:
        self.command, self.data = command, data
        self.fields = _decode(command, data)

    def __repr__(self) -> str:
        return f"<milter reply {self.command!r} {self.fields!r}>"


def _decode(command: bytes, data: bytes) -> tuple:
    if command == OPTNEG_REPLY:
        if len(data) < 12:
            raise MilterError("short option negotiation")
        return struct.unpack(">III", data[:12])
    if command in (ADDHEADER, CHGHEADER, INSHEADER):
        if command == ADDHEADER:
            index, rest = 0, data
        else:
            if len(data) < 4:
                raise MilterError("short header change")
            index, rest = struct.unpack(">I", data[:4])[0], data[4:]
        parts = rest.split(b"\0")
        if len(parts) < 3 or not parts[0]:
            raise MilterError("malformed header change")
        return index, parts[0], parts[1]
    if command == REPLYCODE:
        text = data.rstrip(b"\0")
        if len(text) < 3 or not text[:3].isdigit() or text[:1] not in (b"4", b"5") or (len(text) > 3 and text[3:4] not in (b" ", b"-")):
            raise MilterError(f"bad reply code {text[:40]!r}")
        return (text,)
    if command in (ADDRCPT, DELRCPT, QUARANTINE):
        return (data.split(b"\0")[0],)
    if command in (ADDRCPT_PAR, CHGFROM):
        parts = data.rstrip(b"\0").split(b"\0")
        return (parts[0], parts[1] if len(parts) > 1 else b"")
    if command == REPLBODY:
        return (data,)
    if command == SETSYMLIST:
        if len(data) < 4:
            raise MilterError("short symbol list")
        return struct.unpack(">I", data[:4])[0], data[4:].rstrip(b"\0")
    if command in VERDICTS or command == PROGRESS:
        return ()
    raise MilterError(f"unknown reply {command!r}")


class Reader:
    """Bytes from the milter in, whole replies out."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[Reply]:
        self.buffer += data
        out = []
        while len(self.buffer) >= 4:
            (length,) = struct.unpack(">I", self.buffer[:4])
            if length < 1 or length > MAX_PACKET:
                raise MilterError(f"packet length {length}")
            if len(self.buffer) < 4 + length:
                break
            body = bytes(self.buffer[4:4 + length])
            del self.buffer[:4 + length]
            out.append(Reply(body[:1], body[1:]))
        return out
