"""Real content-check engines on loopback for the tests: spamd (SpamAssassin), clamd (ClamAV) and rspamd.

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
rspamd runs Debian's own config with a private local.d/override.d: its normal worker
on a high port and a unix socket, its proxy as a self-scanning milter on another
(.milter_port), no controller or fuzzy worker, every GTUBE
pattern on, milter_headers' extended headers for every client, DKIM signing of
example.org for authenticated users with a key it makes, a settings id that
greylists everything, a soft reject for a Subject with `soft-reject-me`, and DNS
pointed at a dead port so that no check waits on the network.
Debian packages: spamd (spamassassin's daemon), clamav-daemon, rspamd.
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


class Rspamd(Engine):
    name = "rspamd"
    package = "rspamd"

    def command(self) -> list[str]:
        d = self.directory
        self.milter_port = free_port()
        for sub in ("local/local.d", "local/override.d", "db", "run", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        self.dkim_key = d / "example.org.test.key"
        if not self.dkim_key.exists():
            subprocess.run(["openssl", "genrsa", "-out", str(self.dkim_key), "2048"], check=True, capture_output=True)
        files = {
            "override.d/worker-normal.inc": f'bind_socket = "127.0.0.1:{self.port}";\n'
                                            f'bind_socket = "{self.socket} mode=0666";\ncount = 1;\n',
            "override.d/worker-controller.inc": "enabled = false;\n",
            # The proxy as a milter that scans by itself (rspamd's milter mode), on a second port.
            "override.d/worker-proxy.inc": f'bind_socket = "127.0.0.1:{self.milter_port}";\nmilter = yes;\n'
                                           'timeout = 120s;\nupstream "local" {\n  default = yes;\n'
                                           '  self_scan = yes;\n}\ncount = 1;\n',
            "override.d/worker-fuzzy.inc": "enabled = false;\n",
            "local.d/options.inc": 'enable_test_patterns = true;\ndns {\n  nameserver = ["127.0.0.1:9"];\n'
                                   '  timeout = 0.2s;\n  retransmits = 1;\n}\n',
            "local.d/milter_headers.conf": "extended_spam_headers = true;\nskip_local = false;\n"
                                          "skip_authenticated = false;\n",
            "local.d/dkim_signing.conf": f'allow_username_mismatch = true;\nsign_authenticated = true;\n'
                                         f'sign_local = false;\nuse_esld = true;\nselector = "test";\n'
                                         f'path = "{d}/$domain.$selector.key";\n',
            "local.d/logging.inc": 'type = "file";\nlevel = "info";\n',
            # Test clients come from TEST-NET addresses with no reverse DNS, and DNS is dead here: a clean
            # message scores about 5, which must stay below every action (settings_id test_greylist lowers one).
            "local.d/actions.conf": "greylist = 10;\nadd_header = 11;\nrewrite_subject = 12;\nreject = 15;\n",
            "local.d/settings.conf": "test_greylist {\n  apply {\n    actions {\n      greylist = 0.1;\n    }\n  }\n}\n",
            # A Subject with `soft-reject-me` gets rspamd's soft reject and its own SMTP message.
            "local.d/multimap.conf": 'TEST_SOFT {\n  type = "header";\n  header = "Subject";\n  regexp = true;\n'
                                     f'  map = "{d}/soft.map";\n}}\n',
            "local.d/force_actions.conf": 'rules {\n  TEST_SOFT_REJECT {\n    action = "soft reject";\n'
                                          '    expression = "TEST_SOFT";\n    message = "Soft reject for test";\n'
                                          '  }\n}\n',
        }
        for name, text in files.items():
            (d / "local" / name).write_text(text)
        (d / "soft.map").write_text("/soft-reject-me/\n")
        return [program("rspamd"), "-f", "-i", "-u", "root", "-g", "root", "-c", "/etc/rspamd/rspamd.conf",
                "--var", f"LOCAL_CONFDIR={d / 'local'}", "--var", f"DBDIR={d / 'db'}",
                "--var", f"RUNDIR={d / 'run'}", "--var", f"LOGDIR={d / 'log'}"]

    def public_key(self) -> bytes:
        """The DNS TXT record of the signing key: v=DKIM1; k=rsa; p=..."""
        der = subprocess.run(["openssl", "rsa", "-in", str(self.dkim_key), "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
        import base64

        return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)

    def ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), 2) as sock:
            sock.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
            return b"pong" in sock.recv(1000)

    def log_text(self) -> str:
        own = self.directory / "log" / "rspamd.log"
        return super().log_text() + (own.read_text(errors="replace")[-4000:] if own.exists() else "")


class Opendkim(Engine):
    """opendkim as a milter on a high port: signs example.org mail of clients in 192.0.2.0/24 (its
    InternalHosts) with selector `test` and simple/simple canonicalization, and verifies everyone else's,
    always adding its Authentication-Results."""

    name = "opendkim"
    package = "opendkim"

    def __init__(self, directory: Path, mode: str = "sv") -> None:
        super().__init__(directory)
        self.mode = mode  # "s": sign only, never a DNS lookup (verifying asks the system's resolver for keys)

    def command(self) -> list[str]:
        d = self.directory
        self.dkim_key = d / "test.private"
        if not self.dkim_key.exists():
            subprocess.run(["openssl", "genrsa", "-out", str(self.dkim_key), "2048"], check=True, capture_output=True)
        (d / "internal").write_text("192.0.2.0/24\n127.0.0.1\n")
        conf = d / "opendkim.conf"
        conf.write_text("".join(line + "\n" for line in [
            "Syslog no", "Background no", f"Socket inet:{self.port}@127.0.0.1", f"PidFile {d / 'opendkim.pid'}",
            f"Mode {self.mode}", "Domain example.org", "Selector test", f"KeyFile {self.dkim_key}",
            "Canonicalization simple/simple", f"InternalHosts {d / 'internal'}", "AlwaysAddARHeader yes",
            "AuthservID mx.example.test", "UMask 002", "RequireSafeKeys no"]))
        return [program("opendkim"), "-f", "-x", str(conf)]

    def public_key(self) -> str:
        der = subprocess.run(["openssl", "rsa", "-in", str(self.dkim_key), "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
        import base64

        return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()

    def ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), 2):
            return True


class ClamavMilter(Engine):
    """clamav-milter on a high port, asking the clamd given (a running Clamd): refuses infected mail,
    defers when clamd fails, and adds its X-Virus-* fields to clean mail."""

    name = "clamav-milter"
    package = "clamav-milter"

    def __init__(self, directory: Path, clamd: Clamd) -> None:
        super().__init__(directory)
        self.clamd = clamd

    def command(self) -> list[str]:
        d = self.directory
        conf = d / "clamav-milter.conf"
        conf.write_text("".join(line + "\n" for line in [
            f"MilterSocket inet:{self.port}@127.0.0.1", "Foreground yes", f"PidFile {d / 'clamav-milter.pid'}",
            f"ClamdSocket tcp:127.0.0.1:{self.clamd.port}", "OnClean Accept", "OnInfected Reject", "OnFail Defer",
            "AddHeader Replace", f"LogFile {d / 'clamav-milter-own.log'}", f"TemporaryDirectory {d}",
            "LogInfected Basic"]))
        return [program("clamav-milter"), "-c", str(conf)]

    def ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), 2):
            return True


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
