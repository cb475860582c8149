"""Real content-check engines on loopback for the tests: spamd (SpamAssassin) and clamd (ClamAV).

    server = Spamd(tmp_dir).start()     # .port (TCP on 127.0.0.1) and .socket (a unix socket path)
    server = Clamd(tmp_dir, {"test.ndb": ndb_line("Test.EICAR", EICAR)}).start()
    ...
    server.stop()

Each runs in the foreground in its own process group, with every file under
`tmp_dir`: spamd with only local tests (-L, no network), no user configs,
and a site config dir holding Debian's .pre files; clamd with a signature
database the test writes (no freshclam, no download). For a module-scoped
fixture use `engine(Spamd)`, which skips with the reason
when the program is missing.
Debian packages: spamd (spamassassin's daemon), clamav-daemon.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path


EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def program(name: str) -> str | None:
    found = shutil.which(name)  # /usr/sbin is not in every PATH
    return found or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ndb_line(name: str, data: bytes) -> str:
    """A ClamAV extended signature (.ndb) matching `data` anywhere in any file."""
    return f"{name}:0:*:{data.hex()}\n"


class Engine:
    name = ""
    package = ""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.port = 0
        self.socket = str(self.directory / f"{self.name}.sock")
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 60) -> Engine:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        log = open(self.directory / f"{self.name}.log", "ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_text()[-2000:]}")
            try:
                if self.ready():
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout}s: {self.log_text()[-2000:]}")

    def log_text(self) -> str:
        path = self.directory / f"{self.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own group: the daemon and its children
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


class Spamd(Engine):
    name = "spamd"
    package = "spamd"

    def command(self) -> list[str]:
        site = self.directory / "site"
        site.mkdir(exist_ok=True)
        for pre in Path("/etc/spamassassin").glob("*.pre"):
            shutil.copy(pre, site)
        # Test clients come from TEST-NET addresses with no reverse DNS: not a spam sign here.
        (site / "local.cf").write_text("use_bayes 0\nskip_rbl_checks 1\nbayes_auto_learn 0\n"
                                       "score RCVD_ILLEGAL_IP 0\nscore RDNS_NONE 0\n")
        return [program("spamd"), "--listen", f"127.0.0.1:{self.port}", "--listen", self.socket,
                "-L", "-x", "--siteconfigpath", str(site), "--max-children", "2", "--min-children", "1",
                "--pidfile", str(self.directory / "spamd.pid"), "-s", "stderr"]

    def ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), 2) as sock:
            sock.sendall(b"PING SPAMC/1.5\r\n\r\n")
            return b"PONG" in sock.recv(100)


class Clamd(Engine):
    name = "clamd"
    package = "clamav-daemon"

    def __init__(self, directory: Path, databases: dict[str, str] | None = None) -> None:
        super().__init__(directory)
        self.databases = databases or {"test.ndb": ndb_line("Test.EICAR", EICAR)}

    def command(self) -> list[str]:
        db = self.directory / "db"
        db.mkdir(exist_ok=True)
        for name, text in self.databases.items():
            (db / name).write_text(text)
        conf = self.directory / "clamd.conf"
        conf.write_text("".join(line + "\n" for line in [
            "Foreground yes", f"TCPSocket {self.port}", "TCPAddr 127.0.0.1", f"LocalSocket {self.socket}",
            f"DatabaseDirectory {db}", f"LogFile {self.directory / 'clamd-own.log'}",
            f"TemporaryDirectory {self.directory}", "SelfCheck 0",
        ]))
        return [program("clamd"), "-c", str(conf)]

    def ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), 2) as sock:
            sock.sendall(b"zPING\0")
            return sock.recv(100) == b"PONG\0"


def engine(kind, *args):
    """For a module-scoped fixture: start the engine, yield it, stop it; skip if its program is missing.

    Its files go in a fresh directory that others may read: spamd's children run as `nobody`
    and read the site config after the fork (pytest's tmp dirs are 0700).
    """
    import pytest  # not at the top: bench/ loads this module without pytest

    if program(kind.name) is None:
        pytest.skip(f"{kind.name} not installed (Debian: apt-get install {kind.package})")
    directory = tempfile.mkdtemp(prefix=f"qpsmtpd-test-{kind.name}-")
    os.chmod(directory, 0o755)
    try:
        server = kind(Path(directory), *args).start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class Silent:
    """A TCP listener that accepts connections and never answers: an engine that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()
