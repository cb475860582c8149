"""PROXY protocol v1/v2 (HAProxy's spec): the sans-I/O parser, then the real binary behind a trusted or untrusted peer."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from conftest import dialogue, simple_session

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


# The real binary: TCPREMOTEIP is the proxy (192.0.2.10, see conftest) ------------------------------------
SHOW_IP = """from qpsmtpd_stdio import LOGWARN
def hook_connect(plugin, txn):
    c = plugin.connection
    plugin.log(LOGWARN, f"client={c.remote_ip}:{c.remote_port} local={c.local_ip}:{c.local_port} relay={c.relay_client}")
"""


@pytest.mark.parametrize("header", [V1_TCP4, v2("203.0.113.7", "192.0.2.1", 56324, 25)])
def test_trusted_proxy_gives_plugins_the_real_client(smtp, header):
    smtp.write("proxy_clients", "192.0.2.0/24")
    smtp.plugin("show_ip", SHOW_IP)
    smtp.plugins("show_ip", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(header + simple_session(), RELAYCLIENT="")
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 250, 354, 250, 221], r.stdout
    assert "client=203.0.113.7:56324 local=192.0.2.1:25 relay=False" in r.log
    [msg] = smtp.messages()
    assert b"[203.0.113.7]" in msg and b"192.0.2.10" not in msg
    assert b"Hi 203.0.113.7 [203.0.113.7]" in r.stdout


def test_untrusted_peer_gets_greeting_and_500(smtp):
    smtp.write("proxy_clients", "198.51.100.1")
    smtp.plugin("show_ip", SHOW_IP)
    smtp.plugins("show_ip", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(V1_TCP4 + simple_session())
    assert r.codes == [220, 500, 250, 250, 250, 354, 250, 221], r.stdout
    assert "client=192.0.2.10:40000" in r.log
    [msg] = smtp.messages()
    assert b"[192.0.2.10]" in msg


def test_no_proxy_clients_file_means_plain_smtp(smtp):
    r = smtp.run(v2("203.0.113.7", "192.0.2.1", 1, 25) + b"QUIT\r\n")
    assert r.codes[0] == 220 and 500 in r.codes and r.codes[-1] == 221


@pytest.mark.parametrize("wire", [b"EHLO x\r\nQUIT\r\n", b"PROXY TCP4 nonsense\r\nQUIT\r\n", b""])
def test_trusted_peer_without_a_valid_header_is_closed_silently(smtp, wire):
    smtp.write("proxy_clients", "192.0.2.10")
    r = smtp.run(wire)
    assert r.stdout == b""
    assert smtp.messages() == []


def test_local_header_keeps_the_proxy_address(smtp):
    smtp.write("proxy_clients", "192.0.2.10")
    smtp.plugin("show_ip", SHOW_IP)
    smtp.plugins("show_ip", "rcpt_ok")
    r = smtp.run(v2("0.0.0.0", "0.0.0.0", 0, 0, command=0) + dialogue("EHLO x", "QUIT"))
    assert r.codes == [220, 250, 221]
    assert "client=192.0.2.10:40000" in r.log
