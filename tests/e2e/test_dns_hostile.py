"""Hostile DNS replies from a real UDP server on loopback: a session's CPU stays near a normal one.

The server answers every query with one shape built to cost a careless
reader CPU (long CNAME chains of long names, 127-label names behind 16
compression pointers, 11 kB names stacked through pointers, 250 records of
255-octet names, 65 kB of TXT strings, garbage, a truncated reply whose TCP
retry finds nobody). A session runs
every DNS plugin against it, and its CPU is compared with the same session
against a server giving ordinary answers. The bound is wide on purpose
(half a second more than the ordinary session): a reader without the
bounds of dnswire.py spends seconds on one reply of stacked_names, and every
shape is asked several times in a session.
"""

from __future__ import annotations

import os
import random
import resource

import pytest
from conftest import SIMPLE_BODY, dialogue
from scripteddns import QNAME, UDP_MAX, ScriptedDNS, record

DNS_PLUGINS = ("dnsbl", "rhsbl", "fcrdns", "resolvable_fromhost", "spf", "helo")


def long_name(labels: int = 3, size: int = 63) -> bytes:
    return b"".join(bytes([size]) + os.urandom(size).hex().encode()[:size] for _ in range(labels)) + b"\0"


def max_name() -> bytes:
    """255 octets on the wire: 127 one-octet labels and the root."""
    return b"\x01x" * 127 + b"\0"


RDATA = {1: bytes([127, 0, 0, 2]), 28: bytes(15) + b"\x02", 15: b"\x00\x0a\x01x\x00", 2: b"\x01x\x00", 5: b"\x01x\x00",
         12: b"\x01x\x00"}  # well-formed, so read


def cname_chain(start: int, qtype: int) -> list[bytes]:
    """The name asked CNAME t0, t0 CNAME t1, ...: each target a 190-octet name, read once.

    Past 16 kB a pointer cannot reach the target just written, so owners are then written in full.
    """
    out, owner, offset = [], QNAME, start
    while offset < UDP_MAX - 600:
        target = long_name()
        out.append(record(owner, 5, target))
        where = offset + len(owner) + 10  # the target just written
        owner = (0xC000 | where).to_bytes(2, "big") if where < 0x4000 else target
        offset += len(out[-1])
    return out


def deep_owners(start: int, qtype: int) -> list[bytes]:
    """A 127-label name, 15 pointers in a ladder above it, then records owned by the top rung: 16 hops each."""
    rdata = start + len(QNAME) + 10
    ladder, rung = bytearray(max_name()), rdata
    for _ in range(15):
        ladder += (0xC000 | rung).to_bytes(2, "big")
        rung = rdata + len(ladder) - 2
    out = [record(QNAME, 99, bytes(ladder))]
    top = (0xC000 | rung).to_bytes(2, "big")
    one = record(top, qtype, RDATA.get(qtype, b"\x01x"))
    return out + [one] * ((UDP_MAX - 400 - len(out[0])) // len(one) + 1)


def stacked_names(start: int, qtype: int) -> list[bytes]:
    """Names 11 kB long: 60 blocks of three 63-octet labels, each block ending in a pointer to the one before.

    Every record is owned by the last block. RFC 1035 allows 255 octets, so
    the first name read refuses the reply; a reader without that bound reads
    11 kB per record, 3,000 times.
    """
    base = start + len(QNAME) + 10
    blocks, previous = bytearray(long_name()), base
    for _ in range(60):
        here = base + len(blocks)
        blocks += long_name()[:-1] + (0xC000 | previous).to_bytes(2, "big")
        previous = here
    out = [record(QNAME, 99, bytes(blocks))]
    one = record((0xC000 | previous).to_bytes(2, "big"), qtype, RDATA.get(qtype, b"\x01x"))
    return out + [one] * ((UDP_MAX - 400 - len(out[0])) // len(one) + 1)


def wide_records(start: int, qtype: int) -> list[bytes]:
    """As many records as fit, each owned by a 255-octet name (none of them the name asked)."""
    one = record(max_name(), qtype, max_name() if qtype in (2, 5, 12) else RDATA.get(qtype, b"\x01y"))
    return [one] * ((UDP_MAX - 600) // len(one) + 1)


def txt_strings(start: int, qtype: int) -> list[bytes]:
    """TXT records of 65,000 one-octet strings in all, owned by the name asked."""
    return [record(QNAME, 16, b"\x01v" * 30000), record(QNAME, 16, b"\x01=" * 2700)]


SHAPES = {"cname_chain": cname_chain, "deep_owners": deep_owners, "stacked_names": stacked_names,
          "wide_records": wide_records,
          "txt_strings": txt_strings, "garbage": None, "truncated": None}


def hostile(shape: str | None):
    """The answer function for ScriptedDNS: the shape for every question (None: an ordinary NXDOMAIN)."""
    def answer(qname: str, qtype: int, question: bytes):
        if shape is None:
            return 3, []
        if shape == "garbage":
            return b"\x81\x80\x00\x01\x00\x20\x00\x00\x00\x00" + question + random.randbytes(UDP_MAX)
        if shape == "truncated":
            return b"\x83\x80\x00\x01\x00\x00\x00\x00\x00\x00" + question
        return 0, SHAPES[shape](12 + len(question), qtype)
    return answer


def session_cpu(smtp, shape: str | None) -> tuple[float, object, int]:
    server = ScriptedDNS(hostile(shape))
    try:
        smtp.write("dns_servers", server.servers_line)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = smtp.run(dialogue("EHLO client.example.org", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>",
                              "DATA", "QUIT", body=SIMPLE_BODY), TCPREMOTEIP="192.0.2.77")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        server.close()
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, r, len(server.queries)


@pytest.fixture
def dns_smtp(smtp):
    smtp.write("dns_timeout", "1")
    smtp.write("dns_budget", "4")
    smtp.write("dnsbl_zones", "bl.test")
    smtp.write("rhsbl_zones", "rhs.test")
    smtp.plugins("relay", *DNS_PLUGINS, "rcpt_ok", f"queue/maildir {smtp.maildir}")
    return smtp


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_hostile_replies_cost_about_what_ordinary_ones_do(dns_smtp, shape):
    normal, plain, plain_queries = session_cpu(dns_smtp, None)
    assert plain.codes[0] == 220 and plain_queries >= 5
    cost, r, queries = session_cpu(dns_smtp, shape)
    assert queries >= 5  # the plugins asked, and read what came back
    assert r.codes[0] == 220 and r.codes[-1] == 221
    r.assert_wellformed()
    assert "Traceback" not in r.log
    assert cost < normal + 0.5, f"{shape}: {cost:.2f}s of CPU against {normal:.2f}s for ordinary answers"
