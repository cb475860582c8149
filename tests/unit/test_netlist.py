"""netlist.py: canonical addresses and the one matcher behind every address list."""

from __future__ import annotations

import ipaddress

from hypothesis import given, strategies as st

from qpsmtpd_stdio.netlist import NetList, canonical_ip, parse_network



def test_canonical_forms():
    assert canonical_ip("::ffff:10.0.0.1") == "10.0.0.1"
    assert canonical_ip("::FFFF:10.0.0.1") == "10.0.0.1"
    assert canonical_ip("::ffff:a00:1") == "10.0.0.1"
    assert canonical_ip("2001:0DB8:0000::0001") == "2001:db8::1"
    assert canonical_ip(" 192.0.2.1 ") == "192.0.2.1"
    for bad in ("", "x", "010.0.0.1", "1.2.3", "fe80::1%eth0", "[192.0.2.1]", "192.0.2.1/24"):
        assert canonical_ip(bad) == "", bad


@given(st.ip_addresses())
def test_canonical_agrees_with_ipaddress(address):
    expected = address.ipv4_mapped if address.version == 6 and address.ipv4_mapped else address
    assert canonical_ip(str(address)) == str(expected)
    assert canonical_ip(address.exploded) == str(expected)


def test_every_entry_kind():
    entries = ["192.0.2.10", "# not an address", "10.0.0.0/8", "2001:db8::/32", "192.168.", "2001:0db9:",
               "172.16.0.1 a comment", "fd00:0:0::7"]
    netlist = NetList(entries)
    assert netlist.bad == ["# not an address"]
    for ip in ("192.0.2.10", "10.9.8.7", "::ffff:10.9.8.7", "2001:db8::1", "192.168.77.1", "2001:db9::5",
               "172.16.0.1", "fd00::7"):
        assert ip in netlist, ip
    for ip in ("192.0.2.11", "", "11.0.0.1", "192.169.0.1", "2001:dba::1", "fd00::8", "junk", None):
        assert ip not in netlist, ip


def test_ipv4_prefix_is_whole_octets():
    assert "10.1.2.3" in NetList(["10."])
    assert "100.1.2.3" not in NetList(["10."])
    assert NetList(["10.0.0.0.", "256.", "1.2.3.4."]).bad == ["10.0.0.0.", "256.", "1.2.3.4."]


def test_parse_network():
    assert parse_network("192.0.2.0/24") == (bytes([192, 0, 2, 0]), 24)
    assert parse_network("2001:db8::1") == (bytes.fromhex("20010db8" + "0" * 23 + "1"), 128)
    assert parse_network("10.0.0.0/\u0663") is None and parse_network("nonsense") is None


def test_bad_networks_never_match():
    netlist = NetList(["10.0.0.0/33", "10.0.0.0/x", "2001:db8::/129", "10.0.0.0/²"])
    assert len(netlist.bad) == 4 and not netlist
    assert "10.0.0.1" not in netlist


@given(st.ip_addresses(v=4), st.ip_addresses(v=4), st.integers(0, 32))
def test_ipv4_cidr_agrees_with_ipaddress(address, other, bits):
    network = ipaddress.ip_network(f"{address}/{bits}", strict=False)
    netlist = NetList([str(network)])
    assert str(address) in netlist
    assert (str(other) in netlist) == (other in network)


@given(st.ip_addresses(v=6), st.ip_addresses(v=6), st.integers(0, 128))
def test_ipv6_cidr_agrees_with_ipaddress(address, other, bits):
    network = ipaddress.ip_network(f"{address}/{bits}", strict=False)
    if network.network_address.ipv4_mapped or other.ipv4_mapped or address.ipv4_mapped:
        return  # mapped addresses are IPv4 clients: test_canonical_forms
    netlist = NetList([str(network)])
    assert str(address) in netlist
    assert (str(other) in netlist) == (other in network)
