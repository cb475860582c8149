"""The real superservers for the end-to-end tests: configs made from the shipped files, started and stopped by PID.

Every server listens on a loopback address and a free high port. A test that
needs a program that is not installed is skipped, saying which Debian
package has it (.ci/run installs them all).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BIN, REPO

PACKAGES = {"xinetd": "xinetd", "tcpserver": "ucspi-tcp", "tcprules": "ucspi-tcp", "swaks": "swaks",
            "systemd-socket-activate": "systemd", "systemd-analyze": "systemd"}
SHIPPED_CONFIG_DIR = "/etc/qpsmtpd"
SHIPPED_SERVER = "/usr/local/bin/in.qpsmtpd"
STARTUP_TIMEOUT = 15


def need(*programs: str) -> None:
    """Skip the test unless every program is on PATH."""
    for program in programs:
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (Debian package {PACKAGES.get(program, program)})")


def need_ipv6() -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"IPv6 loopback ::1 is not available: {exc}")


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def python_path() -> str:
    """PATH for a server's environment: this interpreter first, for bin/in.qpsmtpd's `#!/usr/bin/env python3`."""
    return f"{os.path.dirname(sys.executable)}:/usr/bin:/bin"


def clean_env(**extra: str) -> dict:
    """The little environment a superserver gets at boot (no TCP*, RELAYCLIENT or QPSMTPD_* from the test runner)."""
    env = {"PATH": python_path(), "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def listening(port: int) -> bool:
    """True if some socket is in LISTEN state on `port` (read from /proc: no probe connection, no stray session)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            continue
    return False


class Server:
    """A superserver process started by a test; stop() ends it by its PID."""

    def __init__(self, name: str, argv: list[str], port: int, host: str, log: Path, env: dict, cwd: Path) -> None:
        self.name = name
        self.port = port
        self.host = host
        self.log = log
        argv = [shutil.which(argv[0]) or argv[0], *argv[1:]]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=env, cwd=cwd, start_new_session=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not listening(port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{name} did not start listening on port {port}:\n{self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def set_value(text: str, name: str, value: str, sep: str = "=") -> str:
    """Replace the value of the one `name = value` line (xinetd) or `Name=value` line (systemd)."""
    pattern = re.compile(rf"^(\s*{re.escape(name)}\s*{sep}\s*).*$", re.M)
    assert len(pattern.findall(text)) == 1, f"the shipped file has no single {name!r} line"
    return pattern.sub(lambda m: m.group(1) + value, text)


def user_and_group() -> tuple[str, str]:
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


def xinetd_service(smtp, port: int, host: str = "127.0.0.1") -> str:
    """The shipped xinetd.d/smtp with only the port, the address, the user and the paths changed."""
    text = (REPO / "xinetd.d" / "smtp").read_text()
    assert SHIPPED_CONFIG_DIR in text and SHIPPED_SERVER in text
    user, group = user_and_group()
    text = set_value(text, "port", str(port))
    text = set_value(text, "bind", host)
    text = set_value(text, "user", user)
    text = set_value(text, "group", group)
    text = text.replace(SHIPPED_SERVER, str(BIN)).replace(SHIPPED_CONFIG_DIR, str(smtp.dir))
    text, n = re.subn(r"\bPATH=\S+", "PATH=" + python_path(), text)
    assert n == 1, "the shipped env line has no PATH"
    return text


def xinetd_value(text: str, name: str) -> str:
    return re.search(rf"^\s*{name}\s*=\s*(.*?)\s*$", text, re.M).group(1)


def start_xinetd(smtp, host: str = "127.0.0.1") -> Server:
    """xinetd in the foreground (-dontfork) on a config made from the shipped service; its busy banner as installed."""
    need("xinetd")
    port = free_port(host)
    service = xinetd_service(smtp, port, host)
    # The 421 banner, made as the install comment says.
    Path(xinetd_value(service, "banner_fail")).write_bytes(b"421 mx.example.test busy, try again later\r\n")
    conf = smtp.root / "xinetd.conf"
    conf.write_text(f"defaults\n{{\n\tlog_type = FILE {smtp.root / 'xinetd.log'}\n}}\n\n{service}")
    server = Server("xinetd", ["xinetd", "-dontfork", "-pidfile", str(smtp.root / "xinetd.pid"), "-f", str(conf)],
                    port, host, smtp.root / "xinetd.out", clean_env(), smtp.root)
    server.service = service
    return server


def log_to_file(smtp, path: Path) -> None:
    """Send the sessions' log to `path` at LOGDEBUG, with the shipped logging/file plugin."""
    smtp.write("logging", f"logging/file loglevel LOGDEBUG {path}")


# SMTP clients -------------------------------------------------------------
def connect(host: str, port: int, source: str | None = None, timeout: float = 30) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if source:
        sock.bind((source, 0))
    sock.connect((host, port))
    return sock


class Client:
    """A minimal SMTP client on a raw socket: it shows exactly what the server sent."""

    def __init__(self, host: str, port: int, source: str | None = None, timeout: float = 30) -> None:
        self.sock = connect(host, port, source, timeout)
        self.received = b""
        self._buffer = b""

    def reply(self) -> tuple[int, bytes]:
        """The next whole reply: (code, its lines). (0, b"") if the server closed."""
        lines = b""
        while True:
            while b"\r\n" not in self._buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    self.received += self._buffer
                    return 0, lines + self._buffer
                self._buffer += chunk
            line, self._buffer = self._buffer.split(b"\r\n", 1)
            self.received += line + b"\r\n"
            lines += line + b"\r\n"
            if line[3:4] != b"-":
                return int(line[:3]) if line[:3].isdigit() else -1, lines

    def command(self, line: str | bytes) -> int:
        self.sock.sendall(line if isinstance(line, bytes) else line.encode() + b"\r\n")
        return self.reply()[0]

    def rest(self) -> bytes:
        """Everything until the server closes the connection."""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self._buffer += chunk
        self.received += self._buffer
        rest, self._buffer = self._buffer, b""
        return rest

    def close(self) -> None:
        self.sock.close()


def send_message(host: str, port: int, msg_id: str, rcpt: str = "bob@example.test", source: str | None = None,
                 timeout: float = 30) -> list:
    """One whole session with one message: the reply codes, in order.

    A connection error before the message was sent (refused, reset, closed) ends
    the list with "error": nothing was accepted, a retry is safe. One after it
    raises: the message may have been accepted, so it must not be sent again.
    """
    codes: list = []
    try:
        client = Client(host, port, source, timeout)
    except OSError:
        return ["error"]
    try:
        try:
            codes.append(client.reply()[0])
            for line in ("EHLO load.example", "MAIL FROM:<a@example.org>", f"RCPT TO:<{rcpt}>", "DATA"):
                if codes[-1] not in (220, 250):
                    break
                codes.append(client.command(line))
        except OSError:
            return codes + ["error"]
        if codes[-1] != 354:
            with contextlib.suppress(OSError):
                client.command("QUIT")
            return codes
        codes.append(client.command(
            f"From: a@example.org\r\nTo: {rcpt}\r\nMessage-Id: <{msg_id}>\r\nSubject: {msg_id}\r\n\r\nbody\r\n.\r\n".encode()))
        codes.append(client.command("QUIT"))
        return codes
    finally:
        client.close()


def message_ids(messages: list[bytes]) -> list[str]:
    ids = []
    for msg in messages:
        m = re.search(rb"^Message-Id: <([^>]*)>", msg, re.M | re.I)
        ids.append(m.group(1).decode() if m else "")
    return ids


def received_ip(msg: bytes) -> str:
    """The client address in the top Received header: `from HELO (HOST [IP])`."""
    m = re.search(rb"^Received: from \S+ \(\S+ \[([^\]]+)\]\)", msg, re.M)
    assert m, msg[:400]
    return m.group(1).decode()
