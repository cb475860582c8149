"""PROXY protocol end to end: Debian's HAProxy (`send-proxy`, `send-proxy-v2`) in front of xinetd running bin/in.qpsmtpd.

The client connects from 127.0.0.2; HAProxy connects to xinetd from 127.0.0.1, the address in proxy_clients.
"""

from __future__ import annotations

import pytest

from superserver import Client, Server, clean_env, free_port, need, received_ip, start_xinetd


def start_haproxy(smtp, backend_port: int, option: str) -> Server:
    need("haproxy")
    port = free_port()
    conf = smtp.root / "haproxy.cfg"
    conf.write_text(f"""global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend smtp_in
    bind 127.0.0.1:{port}
    default_backend smtp_out
backend smtp_out
    server qpsmtpd 127.0.0.1:{backend_port} {option}
""")
    return Server("haproxy", ["haproxy", "-db", "-f", str(conf)], port, "127.0.0.1", smtp.root / "haproxy.out",
                  clean_env(), smtp.root)


def session(port: int) -> tuple[list[int], Client]:
    client = Client("127.0.0.1", port, source="127.0.0.2")
    codes = [client.reply()[0]]
    for line in ("EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA"):
        codes.append(client.command(line))
    codes.append(client.command(b"From: a@example.org\r\nSubject: via haproxy\r\n\r\nhi\r\n.\r\n"))
    codes.append(client.command("QUIT"))
    client.close()
    return codes, client


@pytest.mark.parametrize("option", ["send-proxy", "send-proxy-v2"])
def test_real_client_address_through_haproxy(smtp, option):
    smtp.write("proxy_clients", "127.0.0.1")
    xinetd = start_xinetd(smtp)
    try:
        haproxy = start_haproxy(smtp, xinetd.port, option)
        try:
            codes, client = session(haproxy.port)
        finally:
            haproxy.stop()
    finally:
        xinetd.stop()
    assert codes == [220, 250, 250, 250, 354, 250, 221], client.received
    assert b"Hi 127.0.0.2 [127.0.0.2]" in client.received
    [msg] = smtp.messages()
    assert received_ip(msg) == "127.0.0.2"


def test_untrusted_proxy_header_is_refused(smtp):
    smtp.write("proxy_clients", "192.0.2.1")  # not HAProxy's address
    xinetd = start_xinetd(smtp)
    try:
        haproxy = start_haproxy(smtp, xinetd.port, "send-proxy")
        try:
            client = Client("127.0.0.1", haproxy.port, source="127.0.0.2")
            first = client.reply()
            second = client.reply()  # the answer to HAProxy's PROXY line
            client.command("QUIT")
            client.close()
        finally:
            haproxy.stop()
    finally:
        xinetd.stop()
    assert first[0] == 220
    assert second[0] == 500, client.received
