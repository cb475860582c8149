"""Memory stays flat whatever the shape of a 10 MiB message: dot lines, 1-octet lines, long lines, a run of
bare CR, a million header lines. (Their CPU is the benchmark's business: no timing is asserted here.)"""

from __future__ import annotations

import fcntl
import subprocess
import sys

import pytest

from conftest import BIN
from shapes import shapes
from test_engine import peak_rss_kib

SIZE = 10 << 20
F_SETPIPE_SZ = 1031  # Linux fcntl
HEAD = b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n"
SHAPES = shapes(SIZE)  # "million-header-lines" is 1,048,576 lines of `X: y`


@pytest.mark.parametrize("shape", list(SHAPES))
def test_memory_is_flat_whatever_the_shape(smtp, shape):
    message, code = SHAPES[shape]
    smtp.write("databytes", str(4 * SIZE))
    proc = subprocess.Popen([sys.executable, str(BIN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=smtp.env())
    fcntl.fcntl(proc.stdin.fileno(), F_SETPIPE_SZ, 1 << 20)  # reads of up to 1 MiB, as from a socket
    proc.stdin.write(HEAD)
    for i in range(0, len(message), 1 << 20):
        proc.stdin.write(message[i:i + (1 << 20)])
    proc.stdin.write(b".\r\n")
    proc.stdin.flush()
    out = b""
    while b"\r\n" + str(code).encode() not in out and out.count(b"\r\n") < 8:
        chunk = proc.stdout.read1(4096)
        assert chunk, out
        out += chunk
    peak = peak_rss_kib(proc.pid)  # still alive: it waits for the next command
    proc.stdin.write(b"QUIT\r\n")
    proc.stdin.close()
    out += proc.stdout.read()
    proc.wait(timeout=60)
    assert b"\r\n%d " % code in out, out[-300:]
    assert peak < 30 * 1024, f"{shape}: peak RSS {peak} KiB"  # about 17 MiB here; dot lines took 57 before
    assert len(smtp.messages()) == (code == 250)
