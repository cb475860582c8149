"""qpsmtpd_stdio/dns.py: reverse names checked against dnspython, and the resolver against a real dnsmasq."""

import time

import dns.reversename
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


@pytest.mark.parametrize("ip", ["192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"])
def test_reverse_names_match_dnspython(ip):
    expected = dns.reversename.from_address(ip.replace("::ffff:", "")).to_text(omit_final_dot=True)
    assert qdns.ptr_name(ip) == expected
    assert qdns.reverse_ip(ip) + (".in-addr.arpa" if "." in ip else ".ip6.arpa") == expected


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
    assert query.done() is False and r.waited == 0


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


@pytest.mark.parametrize("args, expected", [
    ((), 2.0),
    (("reject", "0", "timeout", "0.5"), 0.5),      # qpsmtpd's `dnsbl timeout N` argument
    (("timeout", "600"), qdns.MAX_TIMEOUT),         # bounded
    (("timeout", "0"), 2.0), (("timeout", "soon"), 2.0), (("timeout", "\u0661"), 2.0), (("timeout", "inf"), 2.0),
])
def test_a_plugins_timeout_argument_sets_its_queries_wait(args, expected):
    from types import SimpleNamespace

    config = {"dns_servers": ["192.0.2.53"], "dns_timeout": ["2"]}
    connection = SimpleNamespace(notes={})
    plain = SimpleNamespace(connection=connection, args=[], config=lambda name: config.get(name, []), log=print)
    asking = SimpleNamespace(connection=connection, args=list(args), config=plain.config, log=print)
    assert qdns.resolver(plain).query_timeout == 2.0
    query = qdns.resolver(asking).query("a.example", "A")
    assert query.timeout == expected
    assert qdns.resolver(plain).query("b.example", "A").timeout == 2.0  # the next plugin has its own
    qdns.close(plain)
