"""delivery.py: Incoming, a message from its first octet to the end-of-data checks."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from qpsmtpd_stdio.config import Config
from qpsmtpd_stdio.delivery import Incoming
from qpsmtpd_stdio.receivebuffer import DataStats
from qpsmtpd_stdio.spool import Spool
from qpsmtpd_stdio.transaction import Transaction


def config(tmp_path, **settings_) -> Config:
    directory = tmp_path / "config"
    directory.mkdir(exist_ok=True)
    (directory / "spool_dir").write_text(f"{tmp_path / 'spool'}\n")
    for name, value in settings_.items():
        (directory / name).write_text(f"{value}\n")
    return Config(str(directory), None)


def receive(incoming: Incoming, message: bytes, cuts=()) -> DataStats:
    stats, start = DataStats(), 0
    for end in sorted(set(cuts)) + [len(message)]:
        if end > start:
            stats.add(message[start:end], 1000)
            incoming.write(message[start:end], lambda *a: None, stats.chunk_bare_lf, stats.chunk_bare_cr)
            start = end
    stats.finish()
    return stats


def test_a_message_the_policy_refuses_is_not_stored_past_its_first_bare_cr(tmp_path):
    cfg = config(tmp_path)
    incoming = Incoming(cfg, 0, "reject")
    message = b"Subject: x\r\n\r\nok\r\n" + b"bare\rcr\r\n" + b"more text\r\n" * 1000
    stats = receive(incoming, message, [19, 30])
    assert incoming.doomed and incoming.spool.crlf_size == 19 and incoming.spool.size == 16
    assert incoming.dropped == len(message) - 19
    assert incoming.check(stats, Transaction(), cfg, 1000).code == 554


def test_too_big_still_wins_over_a_bare_cr(tmp_path):
    incoming = Incoming(config(tmp_path), 100, "normalize")
    stats = receive(incoming, b"a\rb\r\n" + b"x" * 200 + b"\r\n", [5])
    assert incoming.too_big and incoming.check(stats, Transaction(), config(tmp_path), 1000).code == 552


def test_bare_cr_kept_is_in_the_body(tmp_path):
    incoming = Incoming(config(tmp_path), 0, "keep")
    stats = receive(incoming, b"Subject: x\r\n\r\na\rb\r\nc\nd\r\n", [16])
    txn = Transaction()
    assert incoming.check(stats, txn, config(tmp_path), 1000) is None
    assert txn.body_stream().read() == b"a\rb\r\nc\nd\r\n" and txn.body_size == 10
    assert not incoming.spool.lf  # the bare LF turned the spool back into the octets received


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 6), st.integers(1, 30), st.integers(1, 12), st.lists(st.integers(1, 120), max_size=3),
       st.sampled_from([b"", b"\r\n", b"body\r\n.x\r\n"]))
def test_the_header_block_is_found_as_in_the_octets_received(tmp_path_factory, fields, value, max_lines, cuts, body):
    """An LF spool gives the same header, body and verdict as the CRLF one, at every header limit."""
    tmp = tmp_path_factory.mktemp("d")
    message = b"".join(b"F%d: %s\r\n" % (i, b"v" * value) for i in range(fields)) + b"\r\n" + body
    results = []
    for lf in (True, False):
        cfg = config(tmp, max_header_size=fields * (value + 6) + 2 - (value % 3), max_header_lines=max_lines,
                     size_threshold=40)
        incoming = Incoming(cfg, 0, "reject")
        incoming.spool = Spool(str(tmp / "spool"), 40, lf=lf)
        stats = receive(incoming, message, cuts)
        txn = Transaction()
        reply = incoming.check(stats, txn, cfg, 1000)
        results.append((reply.code if reply else None, txn.header.names() if reply is None else None,
                        txn.body_stream().read() if reply is None else None, txn.body_size if reply is None else None,
                        b"".join(txn.message_chunks(b"\n")) if reply is None else None))
        incoming.close()
    assert results[0] == results[1]
