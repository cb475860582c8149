"""transaction.py: Transaction.message_chunks, the message as queue plugins read it."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from qpsmtpd_stdio.headers import Headers
from qpsmtpd_stdio.receivebuffer import DataStats
from qpsmtpd_stdio.spool import Spool
from qpsmtpd_stdio.transaction import Transaction, new_id

HEAD = b"From: a@example.org\r\nSubject: s\r\n"


def transaction(directory, body: bytes, threshold: int = 1 << 20) -> Transaction:
    spool = Spool(str(directory), threshold)
    spool.write(HEAD + b"\r\n" + body)
    txn = Transaction()
    txn.header = Headers.parse(HEAD[:-2])
    txn.attach(spool, len(HEAD) + 2, len(HEAD) + 2)
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


def lf_transaction(directory, body: bytes, cuts: list[int], threshold: int) -> Transaction:
    """As the session spools a message: chunks cut at `cuts`, each with the flags the protocol's DataStats gives."""
    message = HEAD + b"\r\n" + body
    spool, stats, start = Spool(str(directory), threshold, lf=True), DataStats(), 0
    for end in sorted(set(cuts)) + [len(message)]:
        if end > start:
            stats.add(message[start:end])
            spool.write(message[start:end], stats.chunk_bare_lf, stats.chunk_bare_cr)
            start = end
    spool.finish()
    txn = Transaction()
    txn.header = Headers.parse(HEAD[:-2])
    head = spool.pread(len(message), 0)
    stored = len(HEAD) + 2 - (HEAD + b"\r\n").count(b"\n") if spool.lf else len(HEAD) + 2
    assert head.startswith((HEAD + b"\r\n").replace(b"\r\n", b"\n") if spool.lf else HEAD + b"\r\n")
    txn.attach(spool, stored, len(HEAD) + 2)
    return txn


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"\r\n", b"a", b"b."]), max_size=24).map(b"".join),
       st.lists(st.integers(1, 90), max_size=4), st.sampled_from([b"\n", b"\r\n"]), st.integers(1, 9),
       st.sampled_from([4, 1 << 20]))
def test_an_lf_spool_reads_as_the_octets_received_would(tmp_path_factory, body, cuts, eol, chunk_size, threshold):
    """Whatever the bare CRs and LFs and the chunk boundaries: every reader sees what the CRLF spool gives."""
    directory = tmp_path_factory.mktemp("spool")
    txn, plain = lf_transaction(directory, body, cuts, threshold), transaction(directory, body, threshold)
    assert txn._spool.lf == (b"\n" not in body.replace(b"\r\n", b""))  # back to the octets at the first bare LF
    assert b"".join(txn.message_chunks(eol=eol, chunk_size=chunk_size)) == \
        b"".join(plain.message_chunks(eol=eol, chunk_size=chunk_size))
    assert txn.body_stream().read() == body and txn.body_size == len(body) == plain.body_size
    txn.body_write("x\ny\r\n")
    plain.body_write("x\ny\r\n")
    assert txn.body_stream().read() == plain.body_stream().read() == body + b"x\r\ny\r\n"
    txn.replace_body(b"p\rq\n")
    assert txn.body_stream().read() == b"p\r\nq\r\n" and txn.body_size == 6
    assert b"".join(txn.message_chunks(eol=b"\n")).endswith(b"\n\np\nq\n")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"\r\n", b"a", b"b."]), max_size=24).map(b"".join),
       st.sampled_from([b"\n", b"\r\n"]), st.sampled_from([4, 1 << 20]))
def test_write_message_writes_what_message_chunks_gives(tmp_path_factory, body, eol, threshold):
    directory = tmp_path_factory.mktemp("spool")
    txn = lf_transaction(directory, body, [7], threshold)
    with open(directory / "out", "wb") as out:
        out.write(b"Return-Path: <a@example.org>\n")
        txn.write_message(out, eol)
    assert (directory / "out").read_bytes() == b"Return-Path: <a@example.org>\n" + b"".join(txn.message_chunks(eol))


def test_write_message_copies_a_spool_file_in_the_kernel(tmp_path):
    """The body of an LF spool on disk goes by copy_file_range: this process never reads it back."""
    body = b"line\r\n" * 5000
    txn = lf_transaction(tmp_path, body, [1000, 20000], threshold=4096)
    assert txn._spool.lf and txn._spool.on_disk
    reads = []
    txn._spool.pread = lambda size, offset: reads.append((size, offset)) or b""
    with open(tmp_path / "out", "wb") as out:
        txn.write_message(out)
    assert reads == [] and (tmp_path / "out").read_bytes() == (HEAD + b"\r\n" + body).replace(b"\r\n", b"\n")


def test_write_message_copies_by_hand_where_the_kernel_will_not(tmp_path, monkeypatch):
    """copy_file_range refuses between some file systems (EXDEV): the body is copied through this process."""
    import errno
    import os

    body = b"line\r\n" * 5000
    txn = lf_transaction(tmp_path, body, [1000], threshold=4096)
    calls = []

    def refuse(*args):
        calls.append(args)
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    with open(tmp_path / "out", "wb") as out:
        txn.write_message(out)
    assert len(calls) == 1 and (tmp_path / "out").read_bytes() == (HEAD + b"\r\n" + body).replace(b"\r\n", b"\n")
