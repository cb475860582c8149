"""The benchmark's SMTP clients: one blocking session, and many sessions at once for the xinetd runs.

Replies are parsed by the project's own reader, qpsmtpd_stdio.testing.parse_replies.
"""

from __future__ import annotations

import datetime
import os
import selectors
import socket
import time
from pathlib import Path

from common import BenchError, MiB, SENDER
from qpsmtpd_stdio.testing import parse_replies

# ----------------------------------------------------------------------------------------------
# The SMTP client side (blocking, one session over one socket)
# ----------------------------------------------------------------------------------------------
class ReplyReader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def reply(self) -> tuple[int, str]:
        while True:
            found = take_reply(self.buf)
            if found is not None:
                reply, self.buf = found
                return reply.code, f"{reply.code} {reply.text}"
            data = self.sock.recv(65536)
            if not data:
                raise BenchError(f"connection closed; got {self.buf!r}")
            self.buf += data

    def expect(self, code: int) -> None:
        got, text = self.reply()
        if got != code:
            raise BenchError(f"expected {code}, got {text!r}")


def client_session(sock: socket.socket, rcpts: list[str], message: bytes | Path, n_msgs: int = 1,
                   final: int = 250) -> float:
    """One pipelined session (RFC 2920 groups): EHLO | MAIL RCPT.. DATA | body . QUIT.

    Returns the seconds from the first body byte sent to the reply after the final dot (of the last
    message), which must be `final`.
    """
    rd = ReplyReader(sock)
    rd.expect(220)
    sock.sendall(b"EHLO client.example\r\n")
    rd.expect(250)
    envelope = (f"MAIL FROM:<{SENDER}>\r\n" + "".join(f"RCPT TO:<{r}>\r\n" for r in rcpts) + "DATA\r\n").encode()
    data_secs = 0.0
    for i in range(n_msgs):
        last = i == n_msgs - 1
        sock.sendall(envelope)
        rd.expect(250)
        for _ in rcpts:
            rd.expect(250)
        rd.expect(354)
        t0 = time.perf_counter()
        if isinstance(message, Path):
            with open(message, "rb") as fh:
                sock.sendfile(fh)
        else:
            sock.sendall(message)
        sock.sendall(b".\r\nQUIT\r\n" if last else b".\r\n")
        rd.expect(final)
        data_secs = time.perf_counter() - t0
    rd.expect(221)
    sock.settimeout(10)
    while sock.recv(65536):
        pass
    return data_secs


def make_message(size: int) -> bytes:
    """A message in wire form (CRLF, no dot-stuffing needed), about `size` octets, without the final dot."""
    head = (
        "From: Sender <sender@example.org>\r\n"
        "To: Bob <bob@example.test>\r\n"
        "Subject: benchmark message\r\n"
        f"Date: {email_date()}\r\n"
        f"Message-Id: <bench.{os.getpid()}.{time.time_ns()}@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog; benchmark body text for qpsmtpd.\r\n"
    n = max(1, (size - len(head)) // len(line))
    body = line * n
    pad = size - len(head) - len(body)
    if pad > 2:
        body += b"x" * (pad - 2) + b"\r\n"
    return head + body


def write_message_file(path: Path, size: int) -> None:
    """A message file of exactly `size` octets in wire form: lines of 80 octets, CRLF, no final dot."""
    head = make_message(0)
    head = head[:head.index(b"\r\n\r\n") + 4]
    line = b"The quick brown fox jumps over the lazy dog; benchmark body text for qpsmtpd.\r\n"
    block = line * (MiB // len(line))
    with open(path, "wb") as fh:
        fh.write(head)
        left = size - len(head)
        while left >= len(block):
            fh.write(block)
            left -= len(block)
        fh.write(line * (left // len(line)))
        left %= len(line)
        if left >= 2:
            fh.write(b"z" * (left - 2) + b"\r\n")


def email_date() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")



# ------------------------------------------------------------------------------------------------
# Parallel client for the xinetd runs (one thread, non-blocking sockets)
# ------------------------------------------------------------------------------------------------
class LoadConn:
    def __init__(self, sock: socket.socket, steps: list[tuple[bytes, list[int]]]) -> None:
        self.sock = sock
        self.steps = steps
        self.i = 0
        self.expect = list(steps[0][1])
        self.buf = b""
        self.out = b""
        self.error = None
        self.t0 = time.monotonic()

    def feed(self, data: bytes) -> None:
        self.buf += data
        while self.expect:
            try:
                found = take_reply(self.buf)
            except BenchError as exc:
                self.error = str(exc)
                return
            if found is None:
                return
            reply, self.buf = found
            code = reply.code
            want = self.expect.pop(0)
            if code != want:
                self.error = f"expected {want}, got {reply.code} {reply.text[:80]!r}"
                return
            if not self.expect:
                self.i += 1
                if self.i < len(self.steps):
                    self.out += self.steps[self.i][0]
                    self.expect = list(self.steps[self.i][1])

    @property
    def finished(self) -> bool:
        return self.i >= len(self.steps)


def take_reply(buf: bytes):
    """(the first whole reply in `buf`, parsed by qpsmtpd_stdio.testing.parse_replies, the rest), or None."""
    pos = 0
    while True:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return None
        if buf[pos + 3:pos + 4] != b"-":  # the last line of a reply
            replies = parse_replies(buf[:nl + 1])
            if not replies:
                raise BenchError(f"bad reply {buf[:nl + 1][:200]!r}")
            return replies[0], buf[nl + 1:]
        pos = nl + 1


def load_steps(nmsg: int, message: bytes) -> list[tuple[bytes, list[int]]]:
    steps = [(b"", [220]), (b"EHLO client.example\r\n", [250])]
    env = f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n".encode()
    for i in range(nmsg):
        last = i == nmsg - 1
        steps.append((env, [250, 250, 354]))
        steps.append((message + (b".\r\nQUIT\r\n" if last else b".\r\n"), [250, 221] if last else [250]))
    return steps


def load_run(port: int, concurrency: int, seconds: float, nmsg: int, message: bytes) -> dict:
    """Keep `concurrency` sessions in flight for `seconds`, then let the last ones finish (bounded)."""
    steps = load_steps(nmsg, message)
    sel = selectors.DefaultSelector()
    done = failed = 0
    errors: set[str] = set()
    t0 = time.monotonic()
    stop = t0 + seconds
    hard_stop = stop + 60

    def start():
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setblocking(False)
        c = LoadConn(s, steps)
        sel.register(s, selectors.EVENT_READ, c)

    def finish(c: LoadConn, ok: bool, why: str | None = None):
        nonlocal done, failed
        sel.unregister(c.sock)
        c.sock.close()
        if ok:
            done += 1
        else:
            failed += 1
            errors.add(why or "?")

    for _ in range(concurrency):
        start()
    while sel.get_map():
        now = time.monotonic()
        if now > hard_stop:
            for key in list(sel.get_map().values()):
                finish(key.data, False, "timed out")
            break
        for key, mask in sel.select(timeout=1.0):
            c: LoadConn = key.data
            if mask & selectors.EVENT_WRITE and c.out:
                try:
                    n = c.sock.send(c.out)
                    c.out = c.out[n:]
                except BlockingIOError:
                    pass
                except OSError as exc:
                    finish(c, False, str(exc))
                    continue
            if mask & selectors.EVENT_READ:
                try:
                    data = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    data = b""
                    if not c.finished:
                        finish(c, False, str(exc))
                        if time.monotonic() < stop:
                            start()
                        continue
                if not data:
                    finish(c, c.finished, None if c.finished else f"closed early: {c.buf[-80:]!r}")
                    if time.monotonic() < stop:
                        start()
                    continue
                c.feed(data)
                if c.error:
                    finish(c, False, c.error)
                    if time.monotonic() < stop:
                        start()
                    continue
                if c.out:  # try to send at once; the rest when writable
                    try:
                        n = c.sock.send(c.out)
                        c.out = c.out[n:]
                    except BlockingIOError:
                        pass
            if c.sock.fileno() >= 0:
                sel.modify(c.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0), c)
    elapsed = time.monotonic() - t0
    sel.close()
    return {"done": done, "failed": failed, "elapsed": elapsed, "sessions_s": done / elapsed,
            "messages_s": done * nmsg / elapsed, "errors": sorted(errors)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"xinetd exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"xinetd is not listening on 127.0.0.1:{port}")
