"""qpimport.py: qpsmtpd's greylisting and karma records, read as ours."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from qpsmtpd_stdio import qpimport

NOW = 1_800_000_000.0
TIMEOUTS = {"black_timeout": 3000.0, "grey_timeout": 12000.0, "white_timeout": 3110400.0}


def greylisting(remote_ip=True, sender=False, recipient=False):
    return SimpleNamespace(flags={"remote_ip": remote_ip, "sender": sender, "recipient": recipient},
                           timeouts=TIMEOUTS)


@pytest.mark.parametrize("integer, ip", [
    ("3221226061", "192.0.2.77"), ("0", "0.0.0.0"), ("42540766411282592856903984951653826561", "2001:db8::1"),
    ("", None), ("12a", None), ("-1", None), ("\u0661", None), ("9" * 40, None), (str(1 << 128), None),
])
def test_ip_of_net_ip_intip(integer, ip):
    assert qpimport.ip_of(integer) == ip


@pytest.mark.parametrize("flags, key, ours", [
    ({}, "3221226061", "192.0.2.77"),
    ({"sender": True}, "3221226061:A@Example.org", "192.0.2.77|a@example.org"),
    ({"sender": True}, "3221226061:", "192.0.2.77|<>"),                   # the null sender
    ({"sender": True, "recipient": True}, "3221226061:a@x.example:b@y.example", "192.0.2.77|a@x.example|b@y.example"),
    ({"sender": True}, '3221226061:"a:b"@x.example', '192.0.2.77|"a:b"@x.example'),  # a ':' inside an address
    ({"remote_ip": False, "sender": True}, "a@x.example", "a@x.example"),
])
def test_greylisting_keys(flags, key, ours):
    record = qpimport.greylisting_record(greylisting(**flags), key, f"{NOW - 10:.0f}:1:0:3", NOW)
    assert record == (ours, (NOW - 10, 0, 3), NOW - 10 + TIMEOUTS["white_timeout"])


@pytest.mark.parametrize("key, value", [
    ("3221226061", f"{NOW - 20000:.0f}:1:2:0"),  # grey, past grey_timeout: expired
    ("not-an-ip", f"{NOW:.0f}:1:0:0"),
    ("3221226061", "garbage"),
    ("3221226061:extra", f"{NOW:.0f}:1:0:0"),    # more parts than the flags give
])
def test_greylisting_records_left_out(key, value):
    assert qpimport.greylisting_record(greylisting(), key, value, NOW) is None


def test_karma_records():
    plugin = SimpleNamespace(expire_at=lambda start, now: max(now + 365 * 86400, start))
    assert qpimport.karma_record(plugin, "3221226061", "0:2:5:9", NOW) == ("192.0.2.77", (0.0, 2, 5, 9, NOW),
                                                                             NOW + 365 * 86400)
    assert qpimport.karma_record(plugin, "3221226061", "::5:9", NOW) is None
    assert qpimport.karma_record(plugin, "x", "0:0:1:1", NOW) is None
