"""The client's address is canonical whichever way it arrives (tcpserver, PROXY v1/v2, XCLIENT).

An IPv4-mapped address such as ::ffff:10.0.0.1 is the IPv4 client 10.0.0.1: it
matches relayclients' 10.0.0.0/8 and is what Received names.
"""

from __future__ import annotations

import pytest

from conftest import dialogue
from test_proxyproto import v2

MAPPED = "::ffff:10.0.0.1"



def relay_session(first: str = "EHLO client.example") -> bytes:
    return dialogue(first, "MAIL FROM:<a@example.org>", "RCPT TO:<someone@elsewhere.example>", "DATA",
                    "QUIT", body="Subject: relay\r\n\r\nhello")


@pytest.fixture
def relay(smtp):
    smtp.write("relayclients", "10.0.0.0/8")
    smtp.plugins("relay", f"queue/maildir {smtp.maildir}")
    return smtp


def check_relayed(smtp, r):
    r.assert_wellformed()
    assert r.codes[-3:] == [354, 250, 221], r.stdout
    [msg] = smtp.messages()
    received = msg.split(b"\r\n\r\n")[0]
    assert b"[10.0.0.1]" in received, received
    assert b"ffff" not in received and b"a00:1" not in received
    assert "10.0.0.1 is a relay client" in r.log


@pytest.mark.parametrize("header", [
    f"PROXY TCP6 {MAPPED} ::ffff:192.0.2.1 5555 25\r\n".encode(),
    v2(MAPPED, "::ffff:192.0.2.1", 5555, 25),
], ids=["v1", "v2"])
def test_proxy_header_with_a_mapped_address(relay, header):
    relay.write("proxy_clients", "192.0.2.10")
    r = relay.run(header + relay_session())
    check_relayed(relay, r)
    assert b"Hi 10.0.0.1 [10.0.0.1]" in r.stdout
    assert "[10.0.0.1]:5555" in r.log


def test_xclient_with_a_mapped_address(relay):
    relay.write("xclient_clients", "192.0.2.10")
    wire = dialogue("EHLO front.example", f"XCLIENT ADDR={MAPPED}") + relay_session()
    r = relay.run(wire)
    check_relayed(relay, r)
    assert r.codes[:3] == [220, 250, 220], r.stdout


def test_xclient_ipv6_tag_and_bad_address(relay):
    relay.write("xclient_clients", "192.0.2.10")
    r = relay.run(dialogue("EHLO f", f"XCLIENT ADDR=IPv6:{MAPPED}", "XCLIENT ADDR=10.0.0.300", "QUIT"))
    assert r.codes == [220, 250, 220, 501, 221], r.stdout


def test_tcpserver_mapped_address(relay):
    r = relay.run(relay_session(), TCPREMOTEIP=MAPPED)
    check_relayed(relay, r)


def test_unlisted_client_may_not_relay(relay):
    r = relay.run(relay_session(), TCPREMOTEIP="::ffff:11.0.0.1")
    assert r.codes[:4] == [220, 250, 250, 450], r.stdout  # no plugin took the foreign recipient
    assert relay.messages() == []


def test_log_and_transcript_name_the_client_behind_the_proxy(relay):
    relay.write("proxy_clients", "192.0.2.10")
    relay.write("loglevel", "LOGINFO")
    transcript = relay.root / "t.log"
    r = relay.run(f"PROXY TCP6 {MAPPED} ::1 5555 25\r\n".encode() + relay_session(), args=("--transcript", str(transcript)))
    check_relayed(relay, r)
    assert "PROXY v1 from unknown[192.0.2.10]:40000: client unknown[10.0.0.1]:5555" in r.log
    notes = [line.split(" * ", 1)[1] for line in transcript.read_text().splitlines() if " * " in line]
    assert notes[:2] == ["connect from unknown[192.0.2.10]:40000 to 192.0.2.1:25",
                         "PROXY v1 from unknown[192.0.2.10]:40000: client unknown[10.0.0.1]:5555"], notes
    assert "session from unknown[10.0.0.1]:5555" in r.log


def test_xclient_is_noted_in_the_log(relay):
    relay.write("xclient_clients", "192.0.2.10")
    relay.write("loglevel", "LOGINFO")
    r = relay.run(dialogue("EHLO front.example", f"XCLIENT ADDR={MAPPED} PORT=6000") + relay_session())
    check_relayed(relay, r)
    assert "XCLIENT from unknown[192.0.2.10]:40000: client unknown[10.0.0.1]:6000" in r.log
