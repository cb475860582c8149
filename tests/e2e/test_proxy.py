"""The real binary behind a trusted or untrusted PROXY peer (config proxy_clients)."""

from __future__ import annotations

import pytest

from conftest import dialogue, simple_session
from test_proxyproto import V1_TCP4, v2

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


def test_auth_behind_a_tls_terminating_proxy(smtp):
    """HAProxy `send-proxy-v2-ssl`: the client's TLS ended at the proxy, which says so; AUTH needs no STARTTLS."""
    import base64

    from test_proxyproto import ssl_tlv

    smtp.write("proxy_clients", "192.0.2.10")
    smtp.write("flat_auth_pw", "alice@example.test:s3cret")
    smtp.write("auth_failure_delay", "0")
    smtp.plugins("auth/auth_flat_file", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    auth = "AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0s3cret").decode()
    wire = dialogue("EHLO c.example", auth, "QUIT")
    r = smtp.run(v2("203.0.113.7", "192.0.2.1", 56324, 587, tlv=ssl_tlv(0x01)) + wire)
    assert r.codes == [220, 250, 235, 221], r.stdout
    assert b"AUTH PLAIN LOGIN CRAM-MD5\r\n" in r.stdout  # the last EHLO line
    r = smtp.run(v2("203.0.113.7", "192.0.2.1", 56324, 587) + wire)  # the proxy says nothing of TLS
    assert r.codes == [220, 250, 538, 221], r.stdout
    assert b"AUTH" not in r.stdout.split(b"\r\n538")[0].split(b"250-")[-1]
    assert b"538 5.7.11 Encryption required" in r.stdout and b"STARTTLS" not in r.stdout
