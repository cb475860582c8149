"""PROXY protocol v1/v2 (HAProxy's spec): the sans-I/O parser, with `v2()` to build headers for other tests."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from qpsmtpd_stdio import proxyproto as pp


def v2(src: str, dst: str, sport: int, dport: int, command: int = 1, tlv: bytes = b"") -> bytes:
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    fam = 0x11 if a.version == 4 else 0x21
    body = a.packed + b.packed + struct.pack("!HH", sport, dport) + tlv
    return pp.V2_SIGNATURE + bytes([0x20 | command, fam]) + struct.pack("!H", len(body)) + body


V1_TCP4 = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 25\r\n"
V1_TCP6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 587\r\n"


@pytest.mark.parametrize("header,expected", [
    (V1_TCP4, ("203.0.113.7", 56324, "192.0.2.1", 25)),
    (V1_TCP6, ("2001:db8::7", 56324, "2001:db8::1", 587)),
    (v2("203.0.113.7", "192.0.2.1", 56324, 25), ("203.0.113.7", 56324, "192.0.2.1", 25)),
    (v2("2001:db8::7", "2001:db8::1", 1, 65535, tlv=b"\x01\x00\x02h2"), ("2001:db8::7", 1, "2001:db8::1", 65535)),
])
def test_headers_at_every_split(header, expected):
    wire = header + b"EHLO x\r\n"
    for cut in range(len(header)):
        assert pp.parse(wire[:cut]) is None, cut
    parsed, used = pp.parse(wire)
    assert used == len(header)
    assert not parsed.local
    assert (parsed.src_ip, parsed.src_port, parsed.dst_ip, parsed.dst_port) == expected


@pytest.mark.parametrize("header", [
    b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
    v2("192.0.2.9", "192.0.2.1", 1, 2, command=0),                         # LOCAL (health check)
    pp.V2_SIGNATURE + b"\x21\x31\x00\x04abcd",                              # AF_UNIX
])
def test_local_and_unknown_carry_no_address(header):
    parsed, used = pp.parse(header + b"QUIT\r\n")
    assert parsed.local and used == len(header)


@pytest.mark.parametrize("wire", [
    b"EHLO x\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 56324\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 25 extra\r\n",
    b"PROXY TCP4 2001:db8::7 192.0.2.1 1 25\r\n",
    b"PROXY TCP4 203.0.113.07 192.0.2.1 1 25\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 25\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 0025 25\r\n",
    b"PROXY UDP4 203.0.113.7 192.0.2.1 1 25\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 1 25\n",
    b"PROXY " + b"x" * 200,
    pp.V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12),   # version 1 in a v2 header
    pp.V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12),   # command 2
    pp.V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4),    # TCP4 with too short an address block
])
def test_malformed_headers_raise(wire):
    with pytest.raises(pp.ProxyError):
        pp.parse(wire)


def test_mapped_addresses_are_canonical():
    parsed, _ = pp.parse(b"PROXY TCP6 ::ffff:10.0.0.1 ::FFFF:192.0.2.1 1 25\r\n")
    assert (parsed.src_ip, parsed.dst_ip) == ("10.0.0.1", "192.0.2.1")
    parsed, _ = pp.parse(v2("::ffff:10.0.0.1", "2001:db8::1", 1, 25))
    assert (parsed.src_ip, parsed.dst_ip) == ("10.0.0.1", "2001:db8::1")


@pytest.mark.parametrize("line", [b"PROXY TCP4 ::1 192.0.2.1 1 25\r\n", b"PROXY TCP6 10.0.0.1 ::1 1 25\r\n",
                                  b"PROXY TCP4 010.0.0.1 192.0.2.1 1 25\r\n"])
def test_v1_family_must_match(line):
    with pytest.raises(pp.ProxyError):
        pp.parse(line)


def ssl_tlv(client: int, version: bytes | None = b"TLSv1.3") -> bytes:
    """PP2_TYPE_SSL: client flags, verify (4 octets), then the PP2_SUBTYPE_SSL_VERSION sub-TLV."""
    sub = b"\x21" + struct.pack("!H", len(version)) + version if version is not None else b""
    value = bytes([client]) + bytes(4) + sub
    return b"\x20" + struct.pack("!H", len(value)) + value


@pytest.mark.parametrize("tlv, expected", [
    (b"", ""),
    (ssl_tlv(0x01), "TLSv1.3"),
    (b"\x01\x00\x02h2" + ssl_tlv(0x07, b"TLSv1.2"), "TLSv1.2"),  # after another TLV; more flags set
    (ssl_tlv(0x01, None), "TLS"),                              # no version said
    (ssl_tlv(0x00), ""),                                        # the client did not use TLS
    (ssl_tlv(0x01, b"TLS\r\n1.3 (x)"), "TLS1.3x"),             # nothing but a version's characters is kept
])
def test_ssl_tlv_says_whether_the_client_used_tls(tlv, expected):
    header, used = pp.parse(v2("203.0.113.7", "192.0.2.1", 56324, 587, tlv=tlv))
    assert header.tls == expected and used == len(v2("203.0.113.7", "192.0.2.1", 56324, 587, tlv=tlv))


def test_a_tlv_past_the_header_is_malformed():
    with pytest.raises(pp.ProxyError):
        pp.parse(v2("203.0.113.7", "192.0.2.1", 1, 2, tlv=b"\x20\x00\x09\x01\x00"))
