"""qpsmtpd_stdio/dnswire.py: the wire format checked against dnspython, and hostile replies bounded."""


import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import assume, event, given, settings, strategies as st

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


# Differential: dnspython reads the same bytes (fuzz/dnsdiff.py says what is compared) ---

from dnsdiff import compare_name, compare_reply, ours_name  # noqa: E402  (fuzz/dnsdiff.py)


# Names made of labels and pointers, mostly backwards, some not: the shapes a hostile reply uses.
name_parts = st.lists(st.one_of(
    st.binary(min_size=0, max_size=70).map(lambda b: bytes([min(len(b), 255)]) + b),
    st.integers(0, 80).map(lambda target: bytes([0xC0 | target >> 8, target & 0xFF])),
    st.sampled_from([b"\x00", b"\x40", b"\x80", b"\xff"]),
), max_size=40).map(b"".join)


@settings(max_examples=1500, deadline=None)
@given(name_parts, st.integers(0, 120))
def test_names_read_as_dnspython_reads_them(data, offset):
    compare_name(data, min(offset, len(data)))


def test_pointer_chains_end_at_the_same_bound():
    chain = b"\x01a\x00" + b"".join(bytes([0xC0, 2 * i - 1 if i > 1 else 0]) for i in range(1, 40))
    for start in range(3, len(chain), 2):  # each pointer points at the one before it
        compare_name(chain, start)
    assert ours_name(chain, 3 + 2 * (wire.MAX_POINTERS - 1)) == ("a", 3 + 2 * wire.MAX_POINTERS)
    assert ours_name(chain, 3 + 2 * wire.MAX_POINTERS) is None


OWNERS = ["a.test", "A.test", "b.test", "c.test", "x.a.test", "other.test"]
RDATA = {
    "A": st.ip_addresses(v=4).map(str),
    "AAAA": st.ip_addresses(v=6).map(str),
    "CNAME": st.sampled_from(OWNERS).map(lambda n: n + "."),
    "PTR": st.sampled_from(OWNERS + ["host.example.org"]).map(lambda n: n + "."),
    "NS": st.sampled_from(OWNERS).map(lambda n: n + "."),
    "MX": st.tuples(st.integers(0, 65535), st.sampled_from(OWNERS + ["."])).map(lambda t: f"{t[0]} {t[1]}."
                                                                              .replace("..", ".")),
    "TXT": st.lists(st.binary(max_size=40), min_size=1, max_size=3).map(
        lambda parts: " ".join('"' + "".join(f"\\{b:03d}" for b in p) + '"' for p in parts)),
}
record = st.sampled_from(sorted(RDATA)).flatmap(
    lambda rdtype: st.tuples(st.sampled_from(OWNERS), st.just(rdtype), RDATA[rdtype]))


def build(records, qtype: str) -> bytes:
    return reply_to("a.test", qtype, [f"{owner}. {rdtype} {rdata}" for owner, rdtype, rdata in records])


def same_reply(data: bytes, qtype: int) -> None:
    outcome = compare_reply(data, qtype)
    assume(outcome != "out of scope")
    event(outcome)


@settings(max_examples=600, deadline=None)
@given(st.lists(record, max_size=12), st.sampled_from(["A", "AAAA", "MX", "TXT", "PTR", "NS"]))
def test_replies_read_as_dnspython_reads_them(records, qtype):
    same_reply(build(records, qtype), wire.TYPES[qtype])


@settings(max_examples=1500, deadline=None)
@given(st.lists(record, min_size=1, max_size=8), st.sampled_from(["A", "MX", "TXT", "PTR"]), st.data())
def test_mutated_replies_read_as_dnspython_reads_them(records, qtype, data):
    packet = bytearray(build(records, qtype))
    answers = 12 + len(wire.encode_name("a.test")) + 4
    for _ in range(data.draw(st.integers(1, 4))):  # mostly in the answers: a header or question hit is just ignored
        where = data.draw(st.integers(data.draw(st.sampled_from([12, answers, answers])), len(packet) - 1))
        packet[where] = data.draw(st.one_of(st.integers(0, 255), st.sampled_from([0, 1, 4, 5, 16, 0xC0, 0x3F, 0x40])))
    if data.draw(st.booleans()):
        packet = packet[:data.draw(st.integers(12, len(packet)))]
    same_reply(bytes(packet), wire.TYPES[qtype])
