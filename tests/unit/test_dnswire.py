"""qpsmtpd_stdio/dnswire.py: the wire format checked against dnspython, and hostile replies bounded."""


import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings, strategies as st

from qpsmtpd_stdio import dnswire as wire


def test_query_packet_is_what_dnspython_reads():
    message = dns.message.from_wire(wire.query_packet(4242, wire.encode_name("Mail.Example.test"), wire.TYPES["MX"]))
    assert message.id == 4242
    assert message.question[0].name == dns.name.from_text("Mail.Example.test")
    assert message.question[0].rdtype == dns.rdatatype.MX
    assert message.flags & 0x0100  # RD
    assert message.edns == 0 and message.payload == wire.EDNS_PAYLOAD


def reply_to(name, rdtype, answers, qid=7, rcode=0):
    query = dns.message.make_query(name, rdtype)
    query.id = qid
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    for text in answers:
        owner, rdtype, rdata = text.split(" ", 2)
        response.answer.append(dns.rrset.from_text(owner, 300, "IN", rdtype, rdata))
    return response.to_wire()  # dnspython compresses names


@pytest.mark.parametrize("rdtype, answers, expected", [
    ("A", ["a.test. A 192.0.2.1", "a.test. A 192.0.2.2"], ["192.0.2.1", "192.0.2.2"]),
    ("AAAA", ["a.test. AAAA 2001:db8::1"], ["2001:db8::1"]),
    ("MX", ["a.test. MX 10 mx.a.test.", "a.test. MX 0 ."], [(10, "mx.a.test"), (0, "")]),
    ("TXT", ['a.test. TXT "v=spf1" " -all"'], ["v=spf1 -all"]),
    ("PTR", ["a.test. PTR host.Example.test."], ["host.Example.test"]),
    ("A", ["a.test. CNAME b.test.", "b.test. CNAME c.test.", "c.test. A 192.0.2.3", "other.test. A 192.0.2.4"],
     ["192.0.2.3"]),
])
def test_reply_parsed_as_dnspython_wrote_it(rdtype, answers, expected):
    packet = reply_to("a.test", rdtype, answers)
    status, records, truncated = wire.parse_response(packet, 7, wire.encode_name("A.TEST"), wire.TYPES[rdtype])
    assert (status, records, truncated) == ("NOERROR", expected, False)


def test_reply_to_another_question_is_ignored():
    packet = reply_to("a.test", "A", ["a.test. A 192.0.2.1"])
    assert wire.parse_response(packet, 8, wire.encode_name("a.test"), 1) is None       # wrong ID
    assert wire.parse_response(packet, 7, wire.encode_name("b.test"), 1) is None       # wrong name
    assert wire.parse_response(packet, 7, wire.encode_name("a.test"), 16) is None      # wrong type
    assert wire.parse_response(packet[:20], 7, wire.encode_name("a.test"), 1) is None  # cut short
    assert wire.parse_response(reply_to("a.test", "A", [], rcode=3), 7, wire.encode_name("a.test"), 1)[0] == "NXDOMAIN"


def test_compression_loop_is_refused():
    packet = bytearray(reply_to("a.test", "A", []))
    packet[7] = 1  # one answer, whose owner name points at itself
    packet += b"\xc0" + bytes([len(packet)]) + b"\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\xc0\x00\x02\x01"
    assert wire.parse_response(bytes(packet), 7, wire.encode_name("a.test"), 1) is None


@pytest.mark.parametrize("name", ["a..b", "a" * 64 + ".test", ".".join(["a" * 63] * 4) + ".test",
                                  "a.b\u00e9\u0301" * 40])
def test_names_dns_cannot_carry(name):
    assert wire.encode_name(name) is None


def test_idn_name_is_sent_as_punycode():
    assert wire.encode_name("b\u00fccher.test") == b"\x0dxn--bcher-kva\x04test\x00"


# Hostile replies: bounded work, whatever their shape ----------------------------------------------
def header(ancount: int, qid: int = 7) -> bytes:
    return qid.to_bytes(2, "big") + b"\x81\x80\x00\x01" + ancount.to_bytes(2, "big") + b"\x00\x00\x00\x00"


QUESTION = wire.encode_name("a.test") + b"\x00\x01\x00\x01"


def pointer(offset: int) -> bytes:
    return (0xC000 | offset).to_bytes(2, "big")


def test_name_longer_than_255_octets_through_pointers_is_refused():
    # Each label points back at the one before: 5 labels of 63 octets make 320 octets.
    data = bytearray(header(1) + QUESTION)
    previous = None
    for _ in range(5):
        start = len(data)
        data += b"\x3f" + b"x" * 63 + (pointer(previous) if previous is not None else b"\x00")
        previous = start
    with pytest.raises(ValueError):
        wire.read_name(bytes(data), previous)
    shorter = bytearray(header(1) + QUESTION)
    first = len(shorter)
    shorter += b"\x3f" + b"x" * 63 + b"\x00"
    assert wire.read_name(bytes(shorter), first)[0] == "x" * 63


def test_pointer_forward_or_to_itself_is_refused():
    data = header(0) + QUESTION + b"\xc0\x30" + b"\x00" * 40
    with pytest.raises(ValueError):
        wire.read_name(data, len(header(0) + QUESTION))
    here = len(header(0) + QUESTION)
    with pytest.raises(ValueError):
        wire.read_name(header(0) + QUESTION + b"\xc0" + bytes([here]), here)


def cname_flood(links: int) -> bytes:
    """a.test CNAME n0, n0 CNAME n1, ... each target a long name, then an A record at the end."""
    records = b""
    owner = b"\xc0\x0c"  # a.test in the question
    for i in range(links):
        target = b"\x3f" + (b"%02d" % i) + b"y" * 61 + b"\x3f" + b"z" * 63 + b"\x3f" + b"w" * 63 + b"\x00"
        offset = 12 + len(QUESTION) + len(records)
        records += owner + b"\x00\x05\x00\x01\x00\x00\x00\x3c" + len(target).to_bytes(2, "big") + target
        owner = pointer(offset + 12)  # the target just written
    records += owner + b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([192, 0, 2, 9])
    return header(links + 1) + QUESTION + records


def test_cname_chain_is_followed_a_bounded_number_of_links(monkeypatch):
    calls = []
    real = wire.read_name
    monkeypatch.setattr(wire, "read_name", lambda data, offset: calls.append(offset) or real(data, offset))
    status, records, _ = wire.parse_response(cname_flood(3), 7, wire.encode_name("a.test"), 1)
    assert (status, records) == ("NOERROR", ["192.0.2.9"])
    status, records, _ = wire.parse_response(cname_flood(60), 7, wire.encode_name("a.test"), 1)
    assert (status, records) == ("NOERROR", [])  # the A record is past MAX_CNAMES links
    # Each name is decoded once: owners, CNAME targets, the question; no re-decoding per link.
    assert len(calls) <= 2 * (3 + 1) + 1 + 2 * (60 + 1) + 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 40))
def test_random_replies_never_raise(noise, cut):
    data = header(noise[0] if noise else 0) + QUESTION + noise
    parsed = wire.parse_response(data[:len(data) - cut], 7, wire.encode_name("a.test"), 1)
    assert parsed is None or parsed[0] == "NOERROR" and all(isinstance(r, str) for r in parsed[1])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.ip_addresses(v=4), min_size=1, max_size=20), st.data())
def test_mutated_dnspython_replies_never_raise(addresses, data):
    good = bytearray(reply_to("a.test", "A", [f"a.test. A {a}" for a in addresses]))
    assert wire.parse_response(bytes(good), 7, wire.encode_name("a.test"), 1)[1] == [str(a) for a in addresses]
    for _ in range(data.draw(st.integers(1, 8))):
        good[data.draw(st.integers(0, len(good) - 1))] = data.draw(st.integers(0, 255))
    wire.parse_response(bytes(good), 7, wire.encode_name("a.test"), 1)  # None or an answer; never an exception
