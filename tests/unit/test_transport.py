"""transport.py: Deadlines, the limits on how long the session waits for a client (pure: times are given)."""

from __future__ import annotations

from qpsmtpd_stdio.transport import Deadlines


def test_the_session_limit_alone():
    d = Deadlines(3600, now=0)
    assert d.next() == (3600, "session time limit exceeded")
    d.start_message(1200, now=10)
    d.received(10**9)
    assert d.next() == (3600, "session time limit exceeded")  # no min_data_rate: no data limit


def test_no_message_in_time():
    d = Deadlines(3600, pre_data=300, now=0)
    assert d.next() == (300, "no message within 300s")
    d.start_message(1200, now=100)
    assert d.next()[1] == "session time limit exceeded"  # a message started: that limit is gone for good
    d.end_message()
    assert d.next()[1] == "session time limit exceeded"


def test_each_octet_buys_time_at_the_minimum_rate():
    d = Deadlines(3600, min_data_rate=500, now=0)
    d.start_message(60, now=0)
    assert d.next() == (60, "data rate too low")
    d.received(5000)                     # 10 s more
    assert d.next() == (70, "data rate too low")
    d.end_message()
    d.received(10**6)                    # outside a message octets buy nothing
    assert d.next() == (3600, "session time limit exceeded")


def test_the_earliest_wins():
    d = Deadlines(100, pre_data=300, now=0)
    assert d.next() == (100, "session time limit exceeded")
