"""Real downstreams for the queue tests, started and stopped by the tests on loopback high ports.

- SmtpSink: Postfix's smtp-sink (package postfix), SMTP or LMTP (-L), dumping
  each transaction to a file; its -r/-f/-q/-A/-W options make the faults.
- Postfix: a private Postfix instance (package postfix) with its own
  config_directory and queue_directory under a temp dir, several smtpd
  listeners on loopback (each with its own `-o` overrides, e.g. a listener
  that defers every RCPT), delivering into Maildirs through virtual(8).
- Dovecot: Dovecot's LMTP (packages dovecot-core, dovecot-lmtpd) with its
  base_dir, users and Maildirs under a temp dir.

Each skips the test, naming the Debian package, when its program is missing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

SBIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/lib/postfix/sbin"
POSTFIX_DAEMONS = "/usr/lib/postfix/sbin"


def need(program: str, package: str) -> str:
    path = shutil.which(program, path=SBIN_PATH) or (program if os.path.isfile(program) else None)
    if not path:
        pytest.skip(f"{program} not installed (Debian package {package})")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen | None = None, timeout: float = 15) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def wait_for(predicate, timeout: float = 15, what: str = "condition"):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > end:
            assert value, f"timed out waiting for {what}"
            return value
        time.sleep(0.05)


def short_tmpdir(prefix: str) -> Path:
    """A temp dir with a short path (UNIX socket paths are limited to 108 octets)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SmtpSink:
    """smtp-sink on 127.0.0.1:port (or a UNIX socket), each transaction dumped to a file."""

    def __init__(self, *options: str, lmtp: bool = False, port: int | None = None,
                 unix: str | None = None) -> None:
        self.program = need("smtp-sink", "postfix")
        self.options = list(options) + (["-L"] if lmtp else [])
        self.port = port or free_port()
        self.unix = unix
        self.dir = short_tmpdir("sink")  # smtp-sink drops to nobody, who cannot enter pytest's tmp dirs
        self.dir.chmod(0o777)
        self.proc = None

    @property
    def address(self) -> str:
        return f"unix:{self.unix}" if self.unix else f"127.0.0.1:{self.port}"

    def start(self) -> "SmtpSink":
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        listen = f"unix:{self.unix}" if self.unix else f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([self.program, *user, "-d", f"{self.dir}/m.", *self.options, listen, "50"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if self.unix:
            wait_for(lambda: os.path.exists(self.unix) or self.proc.poll() is not None, what="smtp-sink socket")
            os.chmod(self.unix, 0o777) if os.path.exists(self.unix) else None
        else:
            wait_listening(self.port, self.proc)
        return self

    def stop(self) -> None:
        stop(self.proc)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "SmtpSink":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.remove()

    def dumps(self) -> list[dict]:
        """Every transaction the sink saw, accepted or not: {"mail": ..., "rcpts": [...], "message": bytes}."""
        out = []
        for path in sorted(self.dir.iterdir(), key=lambda p: p.stat().st_mtime_ns):
            lines = path.read_bytes().split(b"\n")
            i = next((n for n, line in enumerate(lines) if line.startswith(b"Received: ")), len(lines))
            head = [line.decode() for line in lines[:i]]
            out.append({"mail": next((h[13:] for h in head if h.startswith("X-Mail-Args: ")), None),
                        "rcpts": [h[13:] for h in head if h.startswith("X-Rcpt-Args: ")],
                        "helo": next((h[13:] for h in head if h.startswith("X-Helo-Args: ")), None),
                        "message": b"\n".join(lines[i + 3:])[:-1]})
        return out


MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
smtp      unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
"""
QUEUES = ("incoming", "active", "deferred", "maildrop", "hold")


class Postfix:
    """A private Postfix: smtpd listeners named in `listeners` ({name: "-o a=b -o c=d"}), mail for
    <user>@example.test delivered to maildir/<user>/ by virtual(8)."""

    def __init__(self, listeners: dict[str, str], users=("bob", "carol")) -> None:
        if os.geteuid() != 0:
            pytest.skip("a private Postfix instance needs root (its master runs as root, as Debian installs it)")
        self.master = need(os.path.join(POSTFIX_DAEMONS, "master"), "postfix")
        self.sendmail = need("sendmail", "postfix")
        self.openssl = need("openssl", "openssl")
        self.root = short_tmpdir("pf")  # the postfix user must reach it: not under pytest's 0700 tmp dir
        self.etc, self.spool, self.maildir = self.root / "etc", self.root / "spool", self.root / "vmail"
        self.ports = {name: free_port() for name in listeners}
        self.listeners = listeners
        self.users = users
        self.proc = None

    def start(self) -> "Postfix":
        pw = pwd.getpwnam("postfix")
        for d in (self.etc, self.spool, self.maildir, self.root / "data"):
            d.mkdir(parents=True, exist_ok=True)
        for d in (self.maildir, self.root / "data"):
            os.chown(d, pw.pw_uid, pw.pw_gid)
        postdrop = __import__("grp").getgrnam("postdrop").gr_gid
        for name in ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
                     "private", "saved", "trace", "pid", "maildrop", "public"):
            path = self.spool / name
            path.mkdir(exist_ok=True)
            mode, group = {"maildrop": (0o730, postdrop), "public": (0o710, postdrop), "pid": (0o755, 0)}.get(
                name, (0o700, pw.pw_gid))
            os.chown(path, 0 if name == "pid" else pw.pw_uid, group)
            path.chmod(mode)
        self.cert = cert = self.root / "cert.pem"
        subprocess.run([self.openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "2", "-subj", "/CN=postfix.test", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(cert), "-out", str(cert)], check=True, capture_output=True)
        (self.etc / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.spool}
data_directory = {self.root / 'data'}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = postfix.test
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = example.test
virtual_mailbox_base = {self.maildir}
virtual_mailbox_maps = texthash:{self.etc / 'vmailbox'}
virtual_uid_maps = static:{pw.pw_uid}
virtual_gid_maps = static:{pw.pw_gid}
alias_maps =
alias_database =
smtp_dns_support_level = disabled
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_authorized_xforward_hosts = 127.0.0.0/8
maillog_file = {self.root / 'maillog'}
maillog_file_prefixes = {self.root}
smtpd_tls_chain_files = {cert}
smtpd_tls_security_level = none
tls_random_source = dev:/dev/urandom
""")
        (self.etc / "vmailbox").write_text("".join(f"{u}@example.test {u}/\n" for u in self.users))
        lines = [f"127.0.0.1:{self.ports[name]} inet n - n - - smtpd {opts}".rstrip()
                 for name, opts in self.listeners.items()]
        (self.etc / "master.cf").write_text("\n".join(lines) + "\n" + MASTER_CF)
        self.proc = subprocess.Popen([self.master, "-c", str(self.etc), "-d"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for port in self.ports.values():
            wait_listening(port, self.proc)
        return self

    def stop(self) -> None:
        stop(self.proc)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def address(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"

    def queued(self) -> int:
        return sum(len(files) for q in QUEUES for _, _, files in os.walk(self.spool / q))

    def settle(self) -> None:
        """Wait until the queue is empty: whatever was accepted has been delivered."""
        wait_for(lambda: self.queued() == 0, what=f"Postfix queue to empty ({self.maillog()[-2000:]})")

    def messages(self, user: str) -> list[bytes]:
        self.settle()
        new = self.maildir / user / "new"
        return [p.read_bytes() for p in sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns)] \
            if new.is_dir() else []

    def maillog(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""


class Dovecot:
    """Dovecot's LMTP on 127.0.0.1:port; users' Maildirs under a temp dir; the users in `full` have a
    100-octet quota, so their delivery fails at the end of DATA (552 5.2.2) while the others' succeed."""

    def __init__(self, users=("bob", "carol"), full=("carol",)) -> None:
        if os.geteuid() != 0:
            pytest.skip("Dovecot's master needs root here (it switches to the dovecot user to deliver)")
        self.program = need("dovecot", "dovecot-core")
        need("/usr/lib/dovecot/lmtp", "dovecot-lmtpd")
        self.root = short_tmpdir("dv")
        self.port = free_port()
        self.users, self.full = users, full
        self.proc = None

    def start(self) -> "Dovecot":
        mail = self.root / "mail"
        mail.mkdir()
        dv = pwd.getpwnam("dovecot")
        os.chown(mail, dv.pw_uid, dv.pw_gid)
        (self.root / "users").write_text("".join(
            f"{u}@example.test:{{PLAIN}}x::::::{'userdb_quota_rule=*:storage=100B' if u in self.full else ''}\n"
            for u in self.users))
        (self.root / "dovecot.conf").write_text(f"""\
protocols = lmtp
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
ssl = no
listen = 127.0.0.1
mail_location = maildir:{mail}/%n
mail_uid = dovecot
mail_gid = dovecot
first_valid_uid = 1
mail_plugins = quota
lmtp_rcpt_check_quota = no
plugin {{
  quota = maildir:User quota
}}
passdb {{
  driver = passwd-file
  args = {self.root}/users
}}
userdb {{
  driver = passwd-file
  args = {self.root}/users
  default_fields = uid=dovecot gid=dovecot home={mail}/%n
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.port}
  }}
}}
service anvil {{
  chroot =
}}
""")
        self.proc = subprocess.Popen([self.program, "-F", "-c", str(self.root / "dovecot.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_listening(self.port, self.proc)
        return self

    def stop(self) -> None:
        stop(self.proc)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def messages(self, user: str) -> list[bytes]:
        new = self.root / "mail" / user / "new"
        return [p.read_bytes() for p in sorted(new.iterdir())] if new.is_dir() else []
