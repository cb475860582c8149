"""spool.py: small messages in memory, big ones in an unnamed file; readers see the same bytes."""

from __future__ import annotations

import os

from qpsmtpd_stdio.spool import Spool


def test_small_message_stays_in_memory(tmp_path):
    spool = Spool(str(tmp_path / "spool"), 100)
    spool.write(b"hello ")
    spool.write(b"world")
    assert not spool.on_disk and spool.size == 11
    assert spool.pread(5, 6) == b"world"
    assert spool.open(6).read() == b"world"
    assert not (tmp_path / "spool").exists()  # nothing touched the disk


def test_past_the_threshold_it_moves_to_an_unnamed_file(tmp_path):
    directory = tmp_path / "spool"
    spool = Spool(str(directory), 8)
    spool.write(b"0123456789")
    spool.write(b"abc")
    assert spool.on_disk and spool.size == 13
    assert os.listdir(directory) == []  # O_TMPFILE or unlinked at once: nothing left behind
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    assert spool.pread(4, 9) == b"9abc"
    spool.close()


def test_readers_are_independent_and_seekable(tmp_path):
    spool = Spool(str(tmp_path), 4)
    data = bytes(range(256)) * 50
    spool.write(data)
    one, two = spool.open(0), spool.open(100)
    assert one.read(10) == data[:10]
    assert two.read(10) == data[100:110]
    assert one.read(5) == data[10:15]
    two.seek(0)
    assert two.tell() == 0 and two.read() == data[100:]
    spool.close()


def test_close_releases_the_file(tmp_path):
    spool = Spool(str(tmp_path), 0)
    spool.write(b"x")
    before = len(os.listdir("/proc/self/fd"))
    spool.close()
    assert len(os.listdir("/proc/self/fd")) == before - 1
    spool.close()  # twice is harmless


def test_lf_spool_stores_each_crlf_as_lf_and_reads_back_crlf(tmp_path):
    spool = Spool(str(tmp_path), 100, lf=True)
    spool.write(b"a\r\nb\r\n", bare_lf=False, bare_cr=False)
    spool.write(b"c\rd\r\n", bare_lf=False, bare_cr=True)  # a bare CR stays, its neighbours' CRLF do not
    spool.finish()
    assert spool.lf and spool.pread(100, 0) == b"a\nb\nc\rd\n"
    assert spool.size == 8 and spool.crlf_size == 11
    assert spool.open(0, crlf=True).read() == b"a\r\nb\r\nc\rd\r\n"
    assert spool.open(2, crlf=True).read() == b"b\r\nc\rd\r\n"


def test_lf_spool_holds_a_final_cr_until_the_next_chunk_says_what_it_is(tmp_path):
    spool = Spool(str(tmp_path), 100, lf=True)
    spool.write(b"a\r", bare_lf=False, bare_cr=False)  # BDAT may split a CRLF
    spool.write(b"\nb\r", bare_lf=False, bare_cr=False)
    spool.finish()  # the last CR had no LF: it is kept
    assert spool.pread(100, 0) == b"a\nb\r" and spool.crlf_size == 5


def test_a_bare_lf_turns_an_lf_spool_back_into_the_octets_received(tmp_path):
    spool = Spool(str(tmp_path / "s"), 3, lf=True)  # on disk after the first chunk
    spool.write(b"a\r\nb\r\n", bare_lf=False, bare_cr=False)
    assert spool.on_disk and spool.size == 4
    spool.write(b"c\r", bare_lf=False, bare_cr=False)
    spool.write(b"\nd\ne\r\n", bare_lf=True, bare_cr=False)
    spool.finish()
    assert not spool.lf and spool.size == spool.crlf_size == 14
    assert spool.pread(100, 0) == b"a\r\nb\r\nc\r\nd\ne\r\n"
    assert os.listdir(tmp_path / "s") == []
    spool.close()


def test_crlf_reads_in_any_sizes_give_the_same_octets(tmp_path):
    spool = Spool(str(tmp_path), 64, lf=True)
    spool.write(b"ab\r\n" * 100 + b"c\rd\r\n", bare_lf=False, bare_cr=True)
    spool.finish()
    reader, got = spool.open(0, crlf=True), []
    for size in [1, 1000, 3, 7, 500, 2, 10000]:
        got.append(reader.read(size))
    assert b"".join(got) == b"ab\r\n" * 100 + b"c\rd\r\n" and reader.read(5) == b""
    reader.seek(0)
    assert reader.tell() == 0 and reader.read(6) == b"ab\r\nab"
    reader.seek(398)
    assert reader.tell() == 398 and reader.read() == b"\r\nc\rd\r\n"
    assert reader.tell() == 405
    reader.seek(-5, 1)
    assert reader.read() == b"c\rd\r\n"
