"""XCLIENT (Postfix's extension) from hosts in config/xclient_clients: the core's states, then the real binary."""

from __future__ import annotations

import re

import pytest

from conftest import dialogue

from qpsmtpd_stdio import protocol as p
from qpsmtpd_stdio.protocol import Reply

SHOW = """from qpsmtpd_stdio import LOGWARN
def hook_connect(plugin, txn):
    c = plugin.connection
    plugin.log(LOGWARN, f"connect client={c.remote_ip}:{c.remote_port} name={c.remote_host} relay={c.relay_client}")
"""
DENY_NEW = """from qpsmtpd_stdio import DENY
def hook_connect(plugin, txn):
    if plugin.connection.remote_ip == "203.0.113.66":
        return DENY, "not you"
"""
BODY = "Subject: x\r\n\r\nhello"


def command(conn, line: bytes, code: int):
    conn.receive_data(line)
    event = conn.next_event()
    conn.send(event.reply if isinstance(event, p.OutOfSequence) else Reply(code, "x"))
    return event


@pytest.mark.parametrize("code,state", [(220, p.GREETED), (554, p.REJECTED), (501, p.READY), (550, p.READY)])
def test_protocol_states(code, state):
    conn = p.ServerConnection()
    conn.send(Reply(220, "hi"))
    command(conn, b"EHLO x\r\n", 250)
    assert isinstance(command(conn, b"XCLIENT ADDR=192.0.2.1\r\n", code), p.Command)
    assert conn.state == state


def test_protocol_refuses_xclient_in_a_transaction():
    conn = p.ServerConnection()
    conn.send(Reply(220, "hi"))
    command(conn, b"EHLO x\r\n", 250)
    command(conn, b"MAIL FROM:<a@b>\r\n", 250)
    event = command(conn, b"XCLIENT ADDR=192.0.2.1\r\n", 220)
    assert isinstance(event, p.OutOfSequence) and event.reply.code == 503
    assert conn.state == p.MAIL


@pytest.fixture
def xsmtp(smtp):
    smtp.write("xclient_clients", "192.0.2.0/28")
    smtp.write("relayclients", "192.0.2.10")  # the front end relays; its clients must not
    smtp.plugin("show", SHOW)
    smtp.plugins("show", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    return smtp


def test_xclient_replaces_the_client_and_starts_over(xsmtp):
    r = xsmtp.run(dialogue("EHLO proxy", "XCLIENT ADDR=203.0.113.9 PORT=1234 NAME=client.example HELO=h",
                           "MAIL FROM:<a@example.org>", "EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<x@elsewhere.example>",
                           "RCPT TO:<bob@example.test>", "DATA", "QUIT", body=BODY))
    r.assert_wellformed()
    assert re.search(rb"\r\n250[- ]XCLIENT NAME ADDR PORT PROTO HELO LOGIN\r\n", r.stdout)
    assert r.codes == [220, 250, 220, 503, 250, 250, 550, 250, 354, 250, 221], r.stdout
    assert "connect client=192.0.2.10:40000 name= " in r.log
    assert "connect client=203.0.113.9:1234 name=client.example relay=False" in r.log
    [msg] = xsmtp.messages()
    assert b"client.example [203.0.113.9]" in msg and b"192.0.2.10" not in msg


def test_xclient_login_may_relay(xsmtp):
    r = xsmtp.run(dialogue("EHLO proxy", "XCLIENT ADDR=IPV6:2001:db8::9 LOGIN=bob+40example.test", "EHLO c",
                           "MAIL FROM:<a@example.org>", "RCPT TO:<x@elsewhere.example>", "QUIT"))
    assert r.codes == [220, 250, 220, 250, 250, 250, 221], r.stdout
    assert "client=2001:db8::9:0" in r.log


def test_untrusted_host_not_offered_and_refused(xsmtp):
    r = xsmtp.run(dialogue("EHLO c", "XCLIENT ADDR=203.0.113.9", "MAIL FROM:<a@example.org>", "QUIT"),
                  TCPREMOTEIP="192.0.2.99")
    assert b"XCLIENT" not in r.stdout.split(b"\r\n550")[0]
    assert r.codes == [220, 250, 550, 250, 221], r.stdout
    assert "client=203.0.113.9" not in r.log


def test_without_config_it_is_an_unknown_command(smtp):
    r = smtp.run(dialogue("EHLO c", "XCLIENT ADDR=203.0.113.9", "QUIT"))
    assert b"XCLIENT" not in r.stdout.split(b"\r\n500")[0]
    assert r.codes == [220, 250, 500, 221]


@pytest.mark.parametrize("arg", ["", "ADDR", "FOO=1", "ADDR=999.1.1.1", "PORT=70000", "PORT=x", "NAME=a+zz",
                                 "PROTO=LMTP", "NAME=a+20b"])
def test_bad_attributes_501_and_nothing_changes(xsmtp, arg):
    r = xsmtp.run(dialogue("EHLO c", f"XCLIENT {arg}".strip(), "MAIL FROM:<a@example.org>",
                           "RCPT TO:<x@elsewhere.example>", "QUIT"))
    assert r.codes == [220, 250, 501, 250, 250, 221], r.stdout  # still the front end, still relaying


def test_xclient_in_a_transaction_503(xsmtp):
    r = xsmtp.run(dialogue("EHLO c", "MAIL FROM:<a@example.org>", "XCLIENT ADDR=203.0.113.9", "QUIT"))
    assert r.codes == [220, 250, 250, 503, 221]


def test_connect_hook_refuses_the_new_client(xsmtp):
    xsmtp.plugin("deny_new", DENY_NEW)
    xsmtp.plugins("deny_new", "relay", "rcpt_ok")
    r = xsmtp.run(dialogue("EHLO c", "XCLIENT ADDR=203.0.113.66", "EHLO c", "QUIT"))
    assert r.codes == [220, 250, 554, 503, 221], r.stdout
    assert b"554 5.7.1 not you" in r.stdout
