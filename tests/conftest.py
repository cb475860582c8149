"""Shared fixtures: a config dir per test, and the real bin/in.qpsmtpd run over a pipe or a socketpair."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
# Tests import shared helpers by module name: tests/support (fixtures, real-program drivers), fuzz/ (the SMTP driver
# shared with the atheris harnesses), and each folder of tests (some reuse another test file's helpers).
for _dir in (TESTS / "support", REPO / "fuzz", TESTS / "unit", TESTS / "plugins", TESTS / "e2e"):
    if str(_dir) not in sys.path:
        sys.path.insert(0, str(_dir))
BIN = REPO / "bin" / "in.qpsmtpd"
REPLY_LINE = re.compile(rb"^[2-5][0-9][0-9][ -][^\r\n]*\r\n")


class Result:
    def __init__(self, stdout: bytes, stderr: bytes, returncode: int) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.returncode = returncode

    @property
    def log(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    @property
    def lines(self) -> list[bytes]:
        return self.stdout.split(b"\r\n")[:-1] if self.stdout.endswith(b"\r\n") else self.stdout.split(b"\r\n")

    @property
    def codes(self) -> list[int]:
        """The code of each complete reply (last line of multi-line replies only)."""
        return [int(line[:3]) for line in self.lines if line[3:4] == b" "]

    def assert_wellformed(self) -> None:
        """Everything on the wire is an SMTP reply line ending in CRLF."""
        rest = self.stdout
        while rest:
            m = REPLY_LINE.match(rest)
            assert m, f"malformed output at {rest[:80]!r}"
            rest = rest[m.end():]


class SMTPConfig:
    """A config dir under tmp_path, with a Maildir beside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "config"
        self.dir.mkdir()
        self.maildir = root / "Maildir"
        self.plugin_dir = root / "plugins"
        self.plugin_dir.mkdir()
        self.write("me", "mx.example.test")
        self.write("rcpthosts", "example.test")
        self.write("store_dir", str(self.dir))  # never the machine's /var/lib/qpsmtpd
        self.write("plugin_dirs", str(self.plugin_dir))
        self.write("loglevel", "7")
        self.plugins("relay", "rcpt_ok", f"queue/maildir {self.maildir}")

    def write(self, name: str, content: str) -> Path:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if content.endswith("\n") or not content else content + "\n")
        return path

    def plugins(self, *lines: str) -> None:
        self.write("plugins", "\n".join(lines))

    def plugin(self, name: str, source: str) -> Path:
        """Write a test plugin `name` into the test's plugin dir."""
        path = self.plugin_dir / (name + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        return path

    def messages(self, maildir: Path | None = None) -> list[bytes]:
        new = (maildir or self.maildir) / "new"
        if not new.is_dir():
            return []
        # In delivery order: Maildir names carry unpadded microseconds, so they do not sort by time.
        return [p.read_bytes() for p in sorted(new.iterdir(), key=lambda p: (p.stat().st_mtime_ns, p.name))]

    def leftovers(self, maildir: Path | None = None) -> list[str]:
        tmp = (maildir or self.maildir) / "tmp"
        return sorted(os.listdir(tmp)) if tmp.is_dir() else []

    def env(self, **extra: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TCP", "RELAYCLIENT", "QPSMTPD"))}
        env.update({"QPSMTPD_CONFIG": str(self.dir), "TCPREMOTEIP": "192.0.2.10", "TCPREMOTEPORT": "40000",
                    "TCPLOCALIP": "192.0.2.1", "TCPLOCALPORT": "25"})
        env.update(extra)
        return {k: v for k, v in env.items() if v is not None}

    def run(self, data: bytes, via: str = "pipe", timeout: float = 60, args: tuple = (), **env: str) -> Result:
        return run_session(data, self.env(**env), via=via, timeout=timeout, args=args)


def run_session(data: bytes, env: dict, via: str = "pipe", timeout: float = 60, args: tuple = ()) -> Result:
    """Run bin/in.qpsmtpd once. via='pipe': stdin/stdout pipes, stderr captured.
    via='socketpair': one socket on fd 0, 1 and 2, as under inetd (stderr is then the client's socket)."""
    cmd = [sys.executable, str(BIN), *args]
    if via == "pipe":
        proc = subprocess.run(cmd, input=data, capture_output=True, env=env, timeout=timeout)
        return Result(proc.stdout, proc.stderr, proc.returncode)
    ours, theirs = socket.socketpair()
    with ours:
        proc = subprocess.Popen(cmd, stdin=theirs, stdout=theirs, stderr=theirs, env=env)
        theirs.close()
        ours.settimeout(timeout)
        ours.sendall(data)
        ours.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = ours.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=timeout)
    return Result(b"".join(chunks), b"", proc.returncode)


def dialogue(*lines: str, body: str | None = None) -> bytes:
    """Commands joined with CRLF; `body` (if given) is sent after DATA, dot-terminated."""
    out = []
    for line in lines:
        out.append(line.encode() + b"\r\n")
        if line.upper() == "DATA" and body is not None:
            out.append(body.encode() + b"\r\n.\r\n")
    return b"".join(out)


SIMPLE_BODY = "From: a@example.org\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: test\r\n\r\nHello."


def simple_session(rcpt: str = "bob@example.test", sender: str = "a@example.org", body: str = SIMPLE_BODY) -> bytes:
    return dialogue("EHLO client.example", f"MAIL FROM:<{sender}>", f"RCPT TO:<{rcpt}>", "DATA", "QUIT", body=body)


@pytest.fixture
def smtp(tmp_path: Path) -> SMTPConfig:
    return SMTPConfig(tmp_path)
