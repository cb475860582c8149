"""STARTTLS and SMTPS: the tls plugin and the TLS transport, with real clients over pipes and sockets.

A throw-away CA and server certificate are made once per test run with the
`openssl` command. The server runs as bin/in.qpsmtpd with fd 0/1 either a
socketpair (as under a superserver) or two pipes (bridged to a socket here,
so that smtplib and Python's ssl can be the client); TLS must work the same
on both. Helpers here are shared by tests/e2e/test_auth.py.
"""

from __future__ import annotations

import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import BIN, dialogue

ME = "mx.example.test"
MSG = "From: a@example.org\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: tls\r\n\r\nOver TLS.\r\n"
VIAS = ["pipe", "socketpair"]


# A throw-away CA and certificate ------------------------------------------------------------
class Certs:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = directory / "ca.crt"
        self.crt = directory / "server.crt"
        self.key = directory / "server.key"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (Debian package openssl)")
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=Test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={ME}",
            "-addext", f"subjectAltName=DNS:{ME},DNS:localhost,IP:127.0.0.1", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-copy_extensions", "copyall", cwd=d)
    return Certs(d)


def tls_line(certs: Certs) -> str:
    return f"tls {certs.crt} {certs.key} {certs.ca}"


def use_tls(smtp, certs: Certs, *plugins: str) -> None:
    """The tls plugin first (its ehlo hook advertises STARTTLS), then `plugins`, then relay, rcpt_ok, maildir."""
    smtp.plugins(tls_line(certs), *plugins, "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")


def client_context(certs: Certs, **versions) -> ssl.SSLContext:
    """A client that checks our certificate against the test CA, and the host name mx.example.test."""
    context = ssl.create_default_context(cafile=str(certs.ca))
    for name, version in versions.items():
        setattr(context, name, version)
    return context


# The server on a socketpair, or on pipes bridged to a socket -----------------------------------
class Running:
    """bin/in.qpsmtpd started for one session; `sock` is the client's end, whatever the server's fds are."""

    def __init__(self, smtp, via: str, args: tuple = (), **env: str) -> None:
        self.stderr_path = smtp.root / f"stderr.{id(self)}"
        stderr = open(self.stderr_path, "wb")
        self.sock, theirs = socket.socketpair()
        self.sock.settimeout(30)
        cmd = [sys.executable, str(BIN), *args]
        if via == "socketpair":
            self.proc = subprocess.Popen(cmd, stdin=theirs, stdout=theirs, stderr=stderr, env=smtp.env(**env))
            theirs.close()
        else:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                         env=smtp.env(**env))
            threading.Thread(target=_to_pipe, args=(theirs, self.proc.stdin), daemon=True).start()
            threading.Thread(target=_from_pipe, args=(self.proc.stdout, theirs), daemon=True).start()
        stderr.close()

    def finish(self) -> str:
        """Wait for the server to exit; its log."""
        self.sock.close()
        assert self.proc.wait(30) == 0
        return self.stderr_path.read_text(errors="replace")


def _to_pipe(sock: socket.socket, pipe) -> None:
    try:
        while data := sock.recv(65536):
            os.write(pipe.fileno(), data)
    except OSError:
        pass
    finally:
        pipe.close()


def _from_pipe(pipe, sock: socket.socket) -> None:
    try:
        while data := os.read(pipe.fileno(), 65536):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class SocketSMTP(smtplib.SMTP):
    """smtplib on a socket that is already connected (to the server's socketpair, or to the pipe bridge)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(local_hostname="client.example", timeout=30)
        self.sock = sock
        self._host = ME  # what starttls() checks the certificate against
        code, msg = self.getreply()
        assert code == 220, msg


class Replies:
    """A raw client: exactly what the server sent, reply by reply."""

    def __init__(self, sock) -> None:
        self.sock = sock
        self.buffer = b""

    def reply(self) -> tuple[int, bytes]:
        lines = b""
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return 0, lines + self.buffer
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines += line + b"\r\n"
            if line[3:4] != b"-":
                return int(line[:3]), lines

    def command(self, line: bytes) -> tuple[int, bytes]:
        self.sock.sendall(line)
        return self.reply()

    def rest(self) -> bytes:
        data = self.buffer
        while chunk := self.sock.recv(65536):
            data += chunk
        self.buffer = b""
        return data


def received(message: bytes) -> str:
    """The top Received field, unfolded."""
    m = re.search(rb"^Received: .*?(?=^\S)", message, re.M | re.S)
    assert m, message[:500]
    return re.sub(r"\s+", " ", m.group().decode())


# The TLS policy, without a network -------------------------------------------------------------
def test_protocol_range_never_goes_below_tls12():
    from qpsmtpd_stdio.tls import protocol_range

    v12, v13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
    assert protocol_range(None) == (v12, v13)
    assert protocol_range("SSLv23:!SSLv2:!SSLv3") == (v12, v13)  # qpsmtpd's default
    assert protocol_range("TLSv1_2") == (v12, v12)
    assert protocol_range("TLSv1.3") == (v13, v13)
    assert protocol_range("!TLSv1_3") == (v12, v12)
    assert protocol_range("TLSv1:TLSv1_1:TLSv1_2") == (v12, v12)  # the old ones are dropped
    for bad in ("TLSv1:TLSv1_1", "SSLv3", "TLSv9"):
        with pytest.raises(ValueError):
            protocol_range(bad)


def test_server_context_refuses_old_versions_and_weak_suites(certs):
    from qpsmtpd_stdio.tls import server_context

    context = server_context(str(certs.crt), str(certs.key))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    names = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names and all(("GCM" in n or "CHACHA20" in n) and ("ECDHE" in n or "DHE" in n) for n in names), names


# STARTTLS with real clients -------------------------------------------------------------------
@pytest.mark.parametrize("via", VIAS)
def test_smtplib_starttls_delivers_and_received_names_tls(smtp, certs, via):
    use_tls(smtp, certs)
    server = Running(smtp, via)
    client = SocketSMTP(server.sock)
    client.ehlo()
    assert client.has_extn("starttls")
    assert client.starttls(context=client_context(certs))[0] == 220
    client.ehlo()
    assert not client.has_extn("starttls")  # RFC 3207 4.2: not offered again
    assert client.sendmail("a@example.org", ["bob@example.test"], MSG) == {}
    client.quit()
    log = server.finish()
    [message] = smtp.messages()
    line = received(message)
    assert re.search(r"with ESMTPS \(using TLSv1\.3 with cipher TLS_\w+ \(\d+ bits\)\) id ", line), line
    assert "TLS started: TLSv1.3 with cipher" in log


def test_swaks_starttls_over_pipe(smtp, certs):
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed (Debian package swaks)")
    use_tls(smtp, certs)
    done = subprocess.run(["swaks", "--pipe", f"{sys.executable} {BIN}", "--tls", "--helo", "swaks.example",
                           "--from", "a@example.org", "--to", "bob@example.test", "--timeout", "30"],
                          capture_output=True, text=True, env=smtp.env(), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "=== TLS started with cipher TLSv1.3" in done.stdout
    assert re.search(r"<- +220 2\.0\.0 Ready to start TLS", done.stdout)
    assert "with ESMTPS" in received(smtp.messages()[0])


def test_tls_protocols_and_ciphers_config_files(smtp, certs):
    use_tls(smtp, certs)
    smtp.write("tls_protocols", "TLSv1_2")
    smtp.write("tls_ciphers", "ECDHE+CHACHA20")
    server = Running(smtp, "socketpair")
    client = SocketSMTP(server.sock)
    client.starttls(context=client_context(certs))
    assert client.sock.version() == "TLSv1.2" and "CHACHA20" in client.sock.cipher()[0]
    client.sendmail("a@example.org", ["bob@example.test"], MSG)
    client.quit()
    server.finish()
    assert "(using TLSv1.2 with cipher ECDHE-ECDSA-CHACHA20-POLY1305 (256 bits))" in received(smtp.messages()[0])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # ssl.TLSVersion.TLSv1_1: the point of the test
def test_a_tls11_client_is_refused(smtp, certs):
    use_tls(smtp, certs)
    server = Running(smtp, "socketpair")
    client = SocketSMTP(server.sock)
    context = client_context(certs, minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1_1)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, OSError)):
        client.starttls(context=context)
    assert "TLS handshake failed" in server.finish()
    assert smtp.messages() == []


def test_starttls_refusals(smtp, certs):
    use_tls(smtp, certs)
    server = Running(smtp, "socketpair")
    raw = Replies(server.sock)
    assert raw.reply()[0] == 220
    assert raw.command(b"STARTTLS now\r\n")[0] == 501                     # no parameters
    raw.command(b"EHLO client.example\r\nMAIL FROM:<a@example.org>\r\n")
    assert raw.reply()[0] == 250
    assert raw.command(b"STARTTLS\r\n") == (503, b"503 5.5.1 STARTTLS is not permitted during a mail transaction\r\n")
    assert raw.command(b"RSET\r\n")[0] == 250
    assert raw.command(b"STARTTLS\r\n")[0] == 220
    tls = client_context(certs).wrap_socket(server.sock, server_hostname=ME)
    raw = Replies(tls)
    assert raw.command(b"STARTTLS\r\n") == (503, b"503 5.5.1 TLS already active\r\n")  # inside TLS
    assert raw.command(b"MAIL FROM:<a@example.org>\r\n")[0] == 503       # EHLO again first
    assert raw.command(b"QUIT\r\n")[0] == 221
    tls.close()
    server.finish()


def test_unreadable_certificate_no_starttls(smtp, certs, tmp_path):
    smtp.plugins(f"tls {tmp_path / 'missing.crt'} {certs.key}", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(dialogue("EHLO client.example", "STARTTLS", "QUIT"))
    assert b"STARTTLS" not in r.stdout
    assert r.codes == [220, 250, 454, 221]
    assert "cannot read the certificate" in r.log and "cannot start TLS" in r.log


# STARTTLS command injection (Postfix CVE-2011-0411, aiosmtpd CVE-2024-34083) ----------------------
# Each probe goes in ONE write with STARTTLS. After the handshake the client says EHLO, then a command
# whose answer shows whether the injected one had an effect, then QUIT: exactly three replies must
# come back over TLS, the first to EHLO, and none in plaintext after the 220.
INJECTIONS = {
    "RSET": (b"RSET\r\n", b"MAIL FROM:<a@example.org>\r\n", 250),
    "EHLO": (b"EHLO x\r\n", b"MAIL FROM:<a@example.org>\r\n", 503),      # an injected EHLO would make it 250
    "NOOP": (b"NOOP injected\r\n", b"NOOP\r\n", 250),
    "MAIL": (b"MAIL FROM:<x@y.example>\r\n", b"RCPT TO:<bob@example.test>\r\n", 503),  # no sender: 503
    "MAIL+RCPT": (b"MAIL FROM:<x@y.example>\r\nRCPT TO:<bob@example.test>\r\n", b"DATA\r\n", 503),
}


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("name", INJECTIONS)
def test_plaintext_pipelined_after_starttls_is_never_executed(smtp, certs, via, name):
    injected, probe, expected = INJECTIONS[name]
    use_tls(smtp, certs)
    server = Running(smtp, via)
    raw = Replies(server.sock)
    assert raw.reply()[0] == 220
    assert raw.command(b"EHLO client.example\r\n")[0] == 250
    assert raw.command(b"STARTTLS\r\n" + injected)[0] == 220
    assert raw.buffer == b""
    tls = client_context(certs).wrap_socket(server.sock, server_hostname=ME)
    if name == "EHLO":
        tls.sendall(probe)  # before any EHLO inside TLS
        assert Replies(tls).reply() == (503, b"503 5.5.1 please say hello first ...\r\n")
        probe, expected = b"NOOP\r\n", 250
    tls.sendall(b"EHLO client.example\r\n" + probe + b"QUIT\r\n")
    replies = Replies(tls)
    codes = [replies.reply()[0] for _ in range(3)]
    assert codes == [250, expected, 221]
    assert replies.rest() == b""  # nothing else, ever
    tls.close()
    server.finish()
    assert smtp.messages() == []


def test_plaintext_sent_after_the_220_breaks_the_handshake(smtp, certs):
    use_tls(smtp, certs)
    server = Running(smtp, "socketpair")
    raw = Replies(server.sock)
    raw.reply()
    raw.command(b"EHLO client.example\r\n")
    assert raw.command(b"STARTTLS\r\n")[0] == 220
    server.sock.sendall(b"RSET\r\n")  # plaintext where TLS must begin
    with pytest.raises((ssl.SSLError, OSError)):
        client_context(certs).wrap_socket(server.sock, server_hostname=ME)
    log = server.finish()
    assert "TLS handshake failed" in log
    assert b"250" not in raw.buffer


# SMTPS --------------------------------------------------------------------------------------------
def smtps_client(server: Running, certs: Certs) -> SocketSMTP:
    return SocketSMTP(client_context(certs).wrap_socket(server.sock, server_hostname=ME))


@pytest.mark.parametrize("via", VIAS)
def test_smtps_option(smtp, certs, via):
    use_tls(smtp, certs)
    server = Running(smtp, via, args=("--smtps",))
    client = smtps_client(server, certs)
    client.ehlo()
    assert not client.has_extn("starttls")
    assert client.docmd("STARTTLS") == (503, b"5.5.1 TLS already active")
    assert client.sendmail("a@example.org", ["bob@example.test"], MSG) == {}
    client.quit()
    server.finish()
    assert "with ESMTPS (using TLSv1.3" in received(smtp.messages()[0])


@pytest.mark.parametrize("how", ["config", "port 465"])
def test_smtps_by_config_file_or_port_465_with_swaks(smtp, certs, how):
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed (Debian package swaks)")
    use_tls(smtp, certs)
    env = smtp.env(TCPLOCALPORT="465" if how == "port 465" else "25")
    if how == "config":
        smtp.write("smtps", "1")
    done = subprocess.run(["swaks", "--pipe", f"{sys.executable} {BIN}", "--tlsc", "--from", "a@example.org",
                           "--to", "bob@example.test", "--timeout", "30"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "=== TLS started with cipher" in done.stdout
    assert "with ESMTPS" in received(smtp.messages()[0])


def test_smtps_without_a_tls_plugin_sends_nothing(smtp):
    r = smtp.run(b"EHLO client.example\r\n", args=("--smtps",))
    assert r.stdout == b""
    assert "no plugin provides TLS" in r.log


def test_smtps_plaintext_client_gets_no_smtp_reply(smtp, certs):
    use_tls(smtp, certs)
    r = smtp.run(dialogue("EHLO client.example", "MAIL FROM:<a@example.org>"), args=("--smtps",), via="socketpair")
    assert not re.search(rb"(^|\n)[2-5]\d\d[ -]", r.stdout)  # at most a TLS alert, never a reply
    assert smtp.messages() == []


def test_dhparam_argument_enables_dhe_suites(smtp, tmp_path):
    """qpsmtpd 1.00's fourth argument: DH parameters for TLS 1.2's DHE suites (it used to fail register())."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (Debian package openssl)")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "rsa.key", "-out", "rsa.crt", "-days", "2",
            "-subj", f"/CN={ME}", cwd=tmp_path)
    openssl("dhparam", "-dsaparam", "-out", "dh.pem", "2048", cwd=tmp_path)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers("DHE-RSA-AES128-GCM-SHA256")
    for dhparam, works in ((tmp_path / "dh.pem", True), (None, False)):
        extra = [str(dhparam)] if dhparam else []
        smtp.plugins(" ".join(["tls", str(tmp_path / "rsa.crt"), str(tmp_path / "rsa.key"), str(tmp_path / "rsa.crt"),
                               *extra]), "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
        server = Running(smtp, "socketpair")
        smtp_client = SocketSMTP(server.sock)
        smtp_client.ehlo()
        if works:
            smtp_client.starttls(context=client)
            assert smtp_client.sock.cipher()[0] == "DHE-RSA-AES128-GCM-SHA256"
            smtp_client.quit()
        else:  # no DH parameters, no DHE suite: this client finds nothing it can use
            with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
                smtp_client.starttls(context=client)
        server.sock.close()
        server.proc.wait(30)
