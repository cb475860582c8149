"""transaction.py: Transaction.message_chunks, the message as queue plugins read it."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from qpsmtpd_stdio.headers import Headers
from qpsmtpd_stdio.spool import Spool
from qpsmtpd_stdio.transaction import Transaction, new_id

HEAD = b"From: a@example.org\r\nSubject: s\r\n"


def transaction(directory, body: bytes, threshold: int = 1 << 20) -> Transaction:
    spool = Spool(str(directory), threshold)
    spool.write(HEAD + b"\r\n" + body)
    txn = Transaction()
    txn.header = Headers.parse(HEAD[:-2])
    txn._spool, txn._body_offset, txn.data_size = spool, len(HEAD) + 2, spool.size
    return txn


def test_crlf_split_across_a_chunk_boundary_becomes_one_lf(tmp_path):
    body = b"ab\r\ncd\r\n"
    txn = transaction(tmp_path, body)
    # chunk_size 3: "ab\r" | "\ncd" | "\r\n": the CR of the first line end is carried to the next chunk.
    chunks = list(txn.message_chunks(eol=b"\n", chunk_size=3))
    assert chunks[0] == b"From: a@example.org\nSubject: s\n\n"
    assert b"".join(chunks[1:]) == b"ab\ncd\n"
    assert not any(chunk.endswith(b"\r") for chunk in chunks[1:-1])


def test_a_lone_cr_at_the_very_end_survives(tmp_path):
    txn = transaction(tmp_path, b"x\r\ny\r")
    assert b"".join(txn.message_chunks(eol=b"\n", chunk_size=2)).endswith(b"\n\nx\ny\r")


def test_crlf_kept_as_it_is(tmp_path):
    txn = transaction(tmp_path, b"a\r\n\r\nb\r\n", threshold=4)  # spooled to disk
    assert b"".join(txn.message_chunks(chunk_size=1)) == HEAD + b"\r\n" + b"a\r\n\r\nb\r\n"


def test_headers_as_modified_are_what_is_read(tmp_path):
    txn = transaction(tmp_path, b"body\r\n")
    txn.add_header("X-Test", "1")
    txn.header.add("Received", "from x", prepend=True)
    assert b"".join(txn.message_chunks(eol=b"\n")) == \
        b"Received: from x\nFrom: a@example.org\nSubject: s\nX-Test: 1\n\nbody\n"
    assert txn.body_size == len(b"body\r\n")
    assert txn.body_stream().read() == b"body\r\n"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64).map(lambda b: b.replace(b"\0", b"\r")), st.integers(1, 9), st.sampled_from([b"\n", b"\r\n"]))
def test_any_chunk_size_gives_the_one_shot_result(tmp_path_factory, body, chunk_size, eol):
    txn = transaction(tmp_path_factory.mktemp("spool"), body, threshold=8)
    expected = (HEAD + b"\r\n").replace(b"\r\n", eol) + (body.replace(b"\r\n", eol) if eol != b"\r\n" else body)
    assert b"".join(txn.message_chunks(eol=eol, chunk_size=chunk_size)) == expected


def test_ids_are_unique():
    assert len({new_id() for _ in range(1000)}) == 1000
