"""qpsmtpd_stdio/dns.py: the wire format checked against dnspython, and the resolver against a real dnsmasq."""

import time

import dns.message
import dns.name
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest
from dnsserver import dns_server, free_port

from qpsmtpd_stdio import dns as qdns

BIG_TXT = [f"{i}" + "x" * 240 for i in range(6)]  # about 1.5 KB: over the EDNS payload, so truncated over UDP

RECORDS = [
    'txt-record=example.test,"v=spf1 ip4:192.0.2.10 -all"',
    "mx-host=example.test,mail.example.test,10",
    "host-record=mail.example.test,192.0.2.25,2001:db8::25",
    "cname=alias.test,mail.example.test",
    "ptr-record=10.2.0.192.in-addr.arpa,client.example.test",
] + [f'txt-record=big.test,"{text}"' for text in BIG_TXT]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from dns_server(tmp_path_factory, RECORDS)


def resolver(server, timeout=1.0, budget=10.0, servers=None):
    return qdns.Resolver(servers or [("127.0.0.1", server.port)], timeout=timeout, budget=budget)


# The wire format, against dnspython ---------------------------------------------
def test_query_packet_is_what_dnspython_reads():
    r = qdns.Resolver([("127.0.0.1", 9)])
    query = qdns.Query(r, "Mail.Example.test", qdns.TYPES["MX"])
    query.id = 4242
    message = dns.message.from_wire(query.packet())
    assert message.id == 4242
    assert message.question[0].name == dns.name.from_text("Mail.Example.test")
    assert message.question[0].rdtype == dns.rdatatype.MX
    assert message.flags & 0x0100  # RD
    assert message.edns == 0 and message.payload == qdns.EDNS_PAYLOAD


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
    wire = reply_to("a.test", rdtype, answers)
    status, records, truncated = qdns.parse_response(wire, 7, qdns.encode_name("A.TEST"), qdns.TYPES[rdtype])
    assert (status, records, truncated) == ("NOERROR", expected, False)


def test_reply_to_another_question_is_ignored():
    wire = reply_to("a.test", "A", ["a.test. A 192.0.2.1"])
    assert qdns.parse_response(wire, 8, qdns.encode_name("a.test"), 1) is None       # wrong ID
    assert qdns.parse_response(wire, 7, qdns.encode_name("b.test"), 1) is None       # wrong name
    assert qdns.parse_response(wire, 7, qdns.encode_name("a.test"), 16) is None      # wrong type
    assert qdns.parse_response(wire[:20], 7, qdns.encode_name("a.test"), 1) is None  # cut short
    assert qdns.parse_response(reply_to("a.test", "A", [], rcode=3), 7, qdns.encode_name("a.test"), 1)[0] == "NXDOMAIN"


def test_compression_loop_is_refused():
    wire = bytearray(reply_to("a.test", "A", []))
    wire[7] = 1  # one answer, whose owner name points at itself
    wire += b"\xc0" + bytes([len(wire)]) + b"\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\xc0\x00\x02\x01"
    assert qdns.parse_response(bytes(wire), 7, qdns.encode_name("a.test"), 1) is None


@pytest.mark.parametrize("ip", ["192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"])
def test_reverse_names_match_dnspython(ip):
    expected = dns.reversename.from_address(ip.replace("::ffff:", "")).to_text(omit_final_dot=True)
    assert qdns.ptr_name(ip) == expected
    assert qdns.reverse_ip(ip) + (".in-addr.arpa" if "." in ip else ".ip6.arpa") == expected


@pytest.mark.parametrize("name", ["a..b", "a" * 64 + ".test", ".".join(["a" * 63] * 4) + ".test",
                                  "a.b\u00e9\u0301" * 40])
def test_names_dns_cannot_carry(name):
    assert qdns.encode_name(name) is None


def test_idn_name_is_sent_as_punycode():
    assert qdns.encode_name("b\u00fccher.test") == b"\x0dxn--bcher-kva\x04test\x00"


# The resolver, against dnsmasq ----------------------------------------------------------
def test_answers_of_every_kind(server):
    r = resolver(server)
    assert r.lookup("example.test", "TXT").records == ["v=spf1 ip4:192.0.2.10 -all"]
    assert r.lookup("example.test", "MX").records == [(10, "mail.example.test")]
    assert r.lookup("mail.example.test", "A").records == ["192.0.2.25"]
    assert r.lookup("mail.example.test", "AAAA").records == ["2001:db8::25"]
    assert r.lookup("alias.test", "A").records == ["192.0.2.25"]
    assert r.lookup(qdns.ptr_name("192.0.2.10"), "PTR").records == ["client.example.test"]
    nxdomain, nodata = r.lookup("nothing.test", "A"), r.lookup("example.test", "A")
    assert (nxdomain.status, nxdomain.void, nxdomain.temporary) == ("NXDOMAIN", True, False)
    assert (nodata.status, nodata.void, nodata.temporary) == ("NOERROR", True, False)


def test_servfail_and_dead_zones_are_temporary(server):
    r = resolver(server, timeout=0.3)
    servfail, dead = r.lookup("x.servfail.test", "A"), r.lookup("x.dead.test", "TXT")
    assert (servfail.status, servfail.temporary) == ("SERVFAIL", True)
    assert (dead.status, dead.temporary) == ("TIMEOUT", True)


def test_truncated_reply_is_asked_again_over_tcp(server):
    answer = resolver(server).lookup("big.test", "TXT")
    assert sorted(answer.records) == BIG_TXT


def test_queries_go_out_at_once_and_are_read_later(server):
    r = resolver(server, timeout=0.3)
    queries = [r.query(f"x{i}.dead.test", "A") for i in range(5)] + [r.query("mail.example.test", "A")]
    assert r.sent == 6 and all(q._answer is None for q in queries)  # all sent before any answer is read
    assert queries[-1].answer().records == ["192.0.2.25"]
    assert [q.answer().status for q in queries[:5]] == ["TIMEOUT"] * 5
    # Five dead queries waited for together: the waiting is one query's (2 tries x 0.3 s), not five.
    assert r.spent < 5 * 2 * 0.3


def test_same_question_is_sent_once(server):
    r = resolver(server)
    first, second = r.query("Mail.Example.test.", "A"), r.query("mail.example.test", "a")
    assert first is second and r.sent == 1


def test_done_never_waits(server):
    r = resolver(server, timeout=5)
    query = r.query("x.dead.test", "A")
    assert query.done() is False and r.spent == 0


def test_dead_server_first_then_live_one(server):
    r = resolver(server, servers=[("127.0.0.1", free_port()), ("127.0.0.1", server.port)])
    assert r.lookup("mail.example.test", "A").records == ["192.0.2.25"]


def test_budget_caps_the_waiting_then_everything_fails_at_once(server):
    r = resolver(server, timeout=0.4, budget=1.0)
    started = time.monotonic()
    statuses = [r.lookup(f"slow{i}.dead.test", "A").status for i in range(6)]  # one by one: 6 x 0.8 s unbudgeted
    assert statuses == ["TIMEOUT"] * 6
    assert time.monotonic() - started < 1.0 + 10  # generous: the point is not 4.8 s
    sent = r.sent
    assert r.lookup("mail.example.test", "A").status == "TIMEOUT" and r.sent == sent  # nothing more is sent


def test_config_files(tmp_path):
    config = {"dns_servers": ["192.0.2.53", "2001:db8::53 5353", "not-an-ip"], "dns_timeout": ["0.5"],
              "dns_budget": ["soon"]}
    logged = []
    r = qdns.Resolver.from_config(lambda name: config.get(name, []), lambda level, msg: logged.append(msg))
    assert r.servers == [("192.0.2.53", 53), ("2001:db8::53", 5353)]
    assert (r.timeout, r.budget) == (0.5, qdns.DEFAULT_BUDGET)
    assert any("not-an-ip" in m for m in logged) and any("dns_budget" in m for m in logged)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search example.test\nnameserver 192.0.2.1\nnameserver fe80::1%eth0\nnameserver ::1\n")
    assert qdns.system_servers(str(resolv)) == [("192.0.2.1", 53), ("::1", 53)]
    assert qdns.system_servers(str(tmp_path / "missing")) == [("127.0.0.1", 53)]


@pytest.mark.parametrize("line, answer, listed", [
    ("bl.test", "127.0.0.2", True),
    ("bl.test", "127.255.255.254", False),   # Spamhaus: "query refused", not a listing
    ("bl.test", "192.0.2.1", False),          # a wildcard or hijacked answer
    ("bl.test=127.0.0.4-7,127.0.0.10", "127.0.0.5", True),
    ("bl.test=127.0.0.4-7,127.0.0.10", "127.0.0.10", True),
    ("bl.test=127.0.0.4-7,127.0.0.10", "127.0.0.2", False),
])
def test_dns_list_answers(line, answer, listed):
    assert qdns.DNSList(line).listed_by(answer) is listed


def test_dns_list_line_forms():
    colon = qdns.DNSList("bl.test:Listed, see http://bl.test/?ip=%IP%")
    space = qdns.DNSList("bl.test=127.0.0.2 Listed at %ZONE%")
    assert (colon.zone, colon.message) == ("bl.test", "Listed, see http://bl.test/?ip=%IP%")
    assert (space.zone, space.codes, space.message) == ("bl.test", ["127.0.0.2"], "Listed at %ZONE%")
