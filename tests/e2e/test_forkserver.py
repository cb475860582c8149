"""qpsmtpd-forkserver and qpsmtpd-prefork run as processes, each test for both: sessions, live edits,
limits, SIGTERM mid-DATA, a crashing child, systemd's sockets (Accept=no), and an upgrade of the code under
it; and the prefork pool growing and shrinking."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
from itertools import cycle
from pathlib import Path

import pytest

from conftest import REPO, SMTPConfig
from superserver import free_port, need

FORKSERVER = REPO / "bin" / "qpsmtpd-forkserver"
PREFORK = REPO / "bin" / "qpsmtpd-prefork"
MSG = "From: a@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"
# All of 127/8 is this host. The servers run with -m 2, and a session counts until the parent reaps it,
# after its client has seen 221: so sequential sessions each come from their own address, as do the probes.
_SOURCES = cycle(f"127.0.0.{n}" for n in range(10, 250))
PROBE = "127.0.0.254"


class Forkserver:
    def __init__(self, smtp: SMTPConfig, *args: str, program: Path = FORKSERVER, prefix: tuple = (),
                 port: int | None = None, pid_file: Path | None = None) -> None:
        self.port = port or free_port()
        self.pid_file = pid_file or smtp.root / "forkserver.pid"
        self.log = open(smtp.root / "forkserver.log", "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TCP", "QPSMTPD", "LISTEN_"))}
        argv = [*prefix, sys.executable, str(program), "--config", str(smtp.dir), "--pid-file", str(self.pid_file), *args]
        if not prefix:
            argv += ["-l", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
        self.smtp = smtp
        deadline = time.monotonic() + 30
        while not self.listening():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.05)

    def listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 1, source_address=(PROBE, 0)) as sock:
                sock.settimeout(5)
                return sock.recv(100).startswith(b"220")
        except OSError:
            return False

    def output(self) -> str:
        return (self.smtp.root / "forkserver.log").read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # never left behind; the test fails on the timeout
            raise
        finally:
            self.log.close()


def send(port: int, rcpt: str = "bob@example.test", body: str = MSG, source: str | None = None) -> dict:
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source or next(_SOURCES), 0)) as client:
        return client.sendmail("a@example.org", [rcpt], body)


def greeting(port: int, timeout: float = 10, source: str | None = None) -> socket.socket:
    """A connection from `source`, or from an address of its own."""
    sock = socket.create_connection(("127.0.0.1", port), timeout, source_address=(source or next(_SOURCES), 0))
    sock.settimeout(timeout)
    return sock


@pytest.fixture(params=[FORKSERVER, PREFORK], ids=["forkserver", "prefork"])
def program(request) -> Path:
    return request.param


@pytest.fixture
def server(smtp, program):
    s = Forkserver(smtp, "-c", "4", "-m", "2", "--shutdown-timeout", "20", program=program)
    yield s
    s.stop()


def test_sessions_deliver_and_sigterm_stops_it(smtp, server):
    assert send(server.port) == {}
    assert send(server.port) == {}
    assert len(smtp.messages()) == 2
    assert int(server.pid_file.read_text()) == server.proc.pid
    assert server.stop() == 0
    out = server.output()
    assert f"listening on 127.0.0.1:{server.port}" in out and "stopping:" in out
    assert out.count("messages=1 errors=0 last=250") == 2  # the sessions' own log lines, on the parent's stderr


def test_every_edit_applies_to_the_next_connection(smtp, server):
    plugin = smtp.plugin("stamp", "from qpsmtpd_stdio import DECLINED\n\ndef hook_data_post(plugin, txn):\n"
                                  "    txn.header.add('X-Stamp', 'one')\n    return DECLINED\n")
    smtp.plugins("relay", "stamp", "badmailfrom", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    assert send(server.port, body=MSG.replace("hi", "before")) == {}
    plugin.write_text(plugin.read_text().replace("'one'", "'two'"))
    assert send(server.port, body=MSG.replace("hi", "after")) == {}
    stamps = {b"Subject: before" in m: m for m in smtp.messages()}  # Maildir names do not sort by time
    assert b"X-Stamp: one" in stamps[True] and b"X-Stamp: two" in stamps[False]
    smtp.write("me", "renamed.example.test")
    with greeting(server.port) as sock:
        assert b"renamed.example.test" in sock.recv(200)
    smtp.write("badmailfrom", "a@example.org")
    with pytest.raises(smtplib.SMTPSenderRefused):
        send(server.port)


def test_edits_under_load_reach_the_very_next_connection(smtp, server):
    """Clients keep sending while a plugin, a config file and a list change: the first connection opened after
    each change sees it, and every message sent meanwhile is delivered."""
    import threading

    plugin = smtp.plugin("stamp", "from qpsmtpd_stdio import DECLINED\n\ndef hook_data_post(plugin, txn):\n"
                                  "    txn.header.add('X-Stamp', 'v0')\n    return DECLINED\n")
    smtp.plugins("relay", "stamp", "badmailfrom", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    stop, sent, errors, lock = threading.Event(), [0], [], threading.Lock()

    def load(source):
        while not stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=30, source_address=(source, 0)) as client:
                    client.sendmail("a@example.org", ["carol@example.test"], MSG.replace("hi", "load"))
                with lock:
                    sent[0] += 1
            except smtplib.SMTPSenderRefused:
                pass  # after the badmailfrom edit: refused, never delivered, never counted
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    # One client address a thread (-m 2 counts a session until the parent reaps it); the test's own are .3.
    threads = [threading.Thread(target=load, args=(f"127.0.0.{n}",)) for n in (4, 5)]
    for t in threads:
        t.start()
    try:
        for version in range(1, 4):
            plugin.write_text(plugin.read_text().replace(f"'v{version - 1}'", f"'v{version}'"))
            with smtplib.SMTP("127.0.0.1", server.port, timeout=30, source_address=("127.0.0.3", 0)) as client:
                client.sendmail("a@example.org", ["bob@example.test"], MSG.replace("hi", f"after v{version}"))
            mine = [m for m in smtp.messages() if f"Subject: after v{version}".encode() in m]
            assert len(mine) == 1 and f"X-Stamp: v{version}".encode() in mine[0]
        smtp.write("me", "renamed.example.test")
        with greeting(server.port, source="127.0.0.3") as sock:
            assert b"renamed.example.test" in sock.recv(200)
        smtp.write("badmailfrom", "a@example.org")
        with pytest.raises(smtplib.SMTPSenderRefused):
            with smtplib.SMTP("127.0.0.1", server.port, timeout=30, source_address=("127.0.0.3", 0)) as client:
                client.sendmail("a@example.org", ["bob@example.test"], MSG)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    loaded = [m for m in smtp.messages() if b"Subject: load" in m]
    assert len(loaded) == sent[0] and sent[0] > 0


def test_per_client_limit_refuses_and_total_limit_waits(smtp, program):
    s = Forkserver(smtp, "-c", "4", "-m", "2", "--shutdown-timeout", "5", program=program)
    try:
        held = [greeting(s.port, source="127.0.0.2") for _ in range(2)]
        for sock in held:
            assert sock.recv(100).startswith(b"220")
        with greeting(s.port, source="127.0.0.2") as third:
            assert third.recv(100).startswith(b"421 4.7.0 Too many connections from 127.0.0.2")
        with greeting(s.port, source="127.0.0.3") as other:
            assert other.recv(100).startswith(b"220")  # another client is not held back
        held[0].close()
        deadline = time.monotonic() + 10
        while True:  # the parent reaps the first session
            with greeting(s.port, source="127.0.0.2") as again:
                if again.recv(100).startswith(b"220"):
                    break
            assert time.monotonic() < deadline
        held[1].close()
    finally:
        s.stop()
    s2 = Forkserver(smtp, "-c", "1", "-m", "5", "--shutdown-timeout", "5", program=program)
    try:
        first = greeting(s2.port)
        assert first.recv(100).startswith(b"220")
        waiting = greeting(s2.port, timeout=2)
        with pytest.raises(TimeoutError):
            waiting.recv(100)  # accepted by the kernel, not by the server: it waits for a free session
        first.sendall(b"QUIT\r\n")
        first.close()
        waiting.settimeout(30)
        assert waiting.recv(100).startswith(b"220")
        waiting.close()
    finally:
        s2.stop()


def test_a_session_that_has_ended_does_not_count_against_its_client(smtp):
    """Regression: a client's next connection can reach the parent before the parent has reaped the session
    that served its last one. With -m 1 it was refused: the dead session still counted."""
    s = Forkserver(smtp, "-c", "4", "-m", "1", "--shutdown-timeout", "5")
    try:
        first = greeting(s.port, source="127.0.0.2")
        assert first.recv(100).startswith(b"220")
        # the probe that saw the server listening had a session too: it must be reaped before the stop
        until(lambda: children(s.proc.pid) == 1, "only the first client's session")
        os.kill(s.proc.pid, signal.SIGSTOP)  # the parent sleeps in select(); its children run on
        try:
            first.sendall(b"QUIT\r\n")
            assert first.recv(100).startswith(b"221")
            first.close()
            until(lambda: children(s.proc.pid, "Z") == 1, "the session has exited, not yet reaped")
            second = greeting(s.port, source="127.0.0.2")  # queued by the kernel until the parent wakes
        finally:
            os.kill(s.proc.pid, signal.SIGCONT)
        with second:
            assert second.recv(100).startswith(b"220"), s.output()
    finally:
        s.stop()


def test_a_prefork_worker_that_has_ended_does_not_count_against_its_client(smtp):
    """Regression: a prefork worker's slot said "busy" until the parent reaped it, so with --max-from-ip 1 a
    client's next connection, taken by an idle worker before that, was refused."""
    s = Forkserver(smtp, "--children", "4", "--idle-children", "2", "--max-from-ip", "1", program=PREFORK)
    try:
        first = greeting(s.port, source="127.0.0.4")
        assert first.recv(100).startswith(b"220")
        # one busy worker and two idle ones, the probe's worker reaped: then the parent sleeps
        until(lambda: children(s.proc.pid) == 3 and children(s.proc.pid, "Z") == 0, "three workers, none ended")
        os.kill(s.proc.pid, signal.SIGSTOP)
        try:
            first.sendall(b"QUIT\r\n")
            assert first.recv(100).startswith(b"221")
            first.close()
            until(lambda: children(s.proc.pid, "Z") == 1, "the worker has exited, not yet reaped")
            with greeting(s.port, source="127.0.0.4") as second:  # an idle worker takes it at once
                assert second.recv(100).startswith(b"220"), s.output()
        finally:
            os.kill(s.proc.pid, signal.SIGCONT)
    finally:
        s.stop()


def test_hosts_allow_gets_the_count_from_the_parent(smtp, server):
    """The file refuses by address; a client whose karma history is 0 may hold one session, below -m 2."""
    smtp.plugin("nokarma", "from qpsmtpd_stdio import DECLINED\n\ndef hook_connect(plugin, txn):\n"
                           "    plugin.connection.notes['karma_history'] = 0\n    return DECLINED\n")
    smtp.plugins("nokarma", "hosts_allow", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    smtp.write("hosts_allow", "127.0.0.2 DENY go away\n")
    with greeting(server.port, source="127.0.0.2") as sock:
        assert sock.recv(100).startswith(b"554 5.7.1 go away")
    with greeting(server.port, source="127.0.0.3") as first:
        assert first.recv(100).startswith(b"220")
        with greeting(server.port, source="127.0.0.3") as second:
            assert second.recv(100).startswith(b"421 4.7.0 too many connections from 127.0.0.3")


def test_sigterm_lets_a_message_in_data_finish(smtp, server):
    client = smtplib.SMTP("127.0.0.1", server.port, timeout=30)
    client.ehlo("c.example")
    client.mail("a@example.org")
    client.rcpt("bob@example.test")
    assert client.docmd("DATA")[0] == 354
    client.send(b"From: a@example.org\r\nSubject: half\r\n\r\nfirst half\r\n")
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # the parent has stopped accepting; the session goes on
    client.send(b"second half\r\n.\r\n")
    code, text = client.getreply()
    assert code == 250, text
    client.quit()
    assert server.proc.wait(30) == 0
    assert b"second half" in smtp.messages()[0]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), 2).close()


def test_a_child_that_dies_leaves_the_server_running(smtp, server):
    smtp.plugin("die", "import os, signal\n\ndef hook_helo(plugin, txn, host):\n"
                       "    os.kill(os.getpid(), signal.SIGKILL)\n")
    smtp.plugins("die", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    with greeting(server.port) as sock:
        assert sock.recv(100).startswith(b"220")
        sock.sendall(b"HELO x\r\n")
        assert sock.recv(100) == b""
    smtp.plugins("relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    assert send(server.port) == {}
    assert server.proc.poll() is None


def test_systemd_accept_no_sockets(smtp, program):
    need("systemd-socket-activate")
    port = free_port()
    s = Forkserver(smtp, prefix=("systemd-socket-activate", "-l", f"127.0.0.1:{port}"), port=port, program=program)
    try:
        assert send(port) == {}
        assert len(smtp.messages()) == 1
    finally:
        s.stop()


def test_an_upgrade_under_it_is_started_with_the_same_socket(smtp, tmp_path, program):
    """A copy of bin/ and the package; the copy's code changes; the next connection meets the new code."""
    root = tmp_path / "install"
    (root / "bin").mkdir(parents=True)
    shutil.copy(program, root / "bin")
    for part in ("qpsmtpd_stdio", "plugins"):
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    s = Forkserver(smtp, "-c", "4", program=root / "bin" / program.name)
    try:
        with greeting(s.port) as sock:
            assert b" ready; send us your mail" in sock.recv(200)
        replies = root / "qpsmtpd_stdio" / "replies.py"
        fresh = root / "qpsmtpd_stdio" / "replies.py.new"
        fresh.write_text(replies.read_text().replace(" ready; send us your mail", " upgraded; send us your mail"))
        os.replace(fresh, replies)  # as dpkg and pip install a file: a new one renamed over the old
        assert send(s.port) == {}
        with greeting(s.port) as sock:
            assert b" upgraded; send us your mail" in sock.recv(200), s.output()
        assert s.proc.poll() is None and "the installed code changed" in s.output()
        assert len(smtp.messages()) == 1
    finally:
        s.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root with -u, which only root can do")
def test_an_upgrade_under_a_service_user_keeps_serving(program):
    """As deployed: root binds and writes the pid file where only root may, then -u drops to the service user.
    The re-executed server is that user already: it must neither rewrite the pid file nor try to become it."""
    import pwd
    import tempfile

    nobody = pwd.getpwnam("nobody")
    root = Path(tempfile.mkdtemp(prefix="qpsmtpd-fork-"))  # outside pytest's 0700 tree: `nobody` must get in
    try:
        root.chmod(0o755)
        install = root / "install"
        (install / "bin").mkdir(parents=True)
        shutil.copy(program, install / "bin")
        for part in ("qpsmtpd_stdio", "plugins"):
            shutil.copytree(REPO / part, install / part, ignore=shutil.ignore_patterns("__pycache__"))
        smtp = SMTPConfig(root)
        (root / "Maildir").mkdir()
        os.chown(root / "Maildir", nobody.pw_uid, nobody.pw_gid)
        for path in [*root.rglob("*")]:
            if path.is_dir() and path != root / "Maildir":
                path.chmod(0o755)
        run = root / "run"
        run.mkdir(mode=0o700)  # as /run: only root writes the pid file
        s = Forkserver(smtp, "-u", "nobody", program=install / "bin" / program.name, pid_file=run / "pid")
        try:
            assert int((run / "pid").read_text()) == s.proc.pid
            assert send(s.port) == {}
            replies = install / "qpsmtpd_stdio" / "replies.py"
            fresh = install / "qpsmtpd_stdio" / "replies.py.new"
            fresh.write_text(replies.read_text().replace(" ready; send us your mail", " upgraded; send us your mail"))
            os.replace(fresh, replies)
            assert send(s.port) == {}, s.output()
            with greeting(s.port) as sock:
                assert b" upgraded; send us your mail" in sock.recv(200), s.output()
            assert s.proc.poll() is None and "the installed code changed" in s.output()
            assert int((run / "pid").read_text()) == s.proc.pid  # exec keeps the pid
            delivered = list((root / "Maildir" / "new").iterdir())
            assert len(delivered) == 2 and all(p.stat().st_uid == nobody.pw_uid for p in delivered)
            assert "Traceback" not in s.output()
        finally:
            assert s.stop() == 0, s.output()
    finally:
        shutil.rmtree(root)


@pytest.mark.parametrize("mode", ["forkserver", "prefork"])
def test_shipped_units_verify(tmp_path, mode):
    need("systemd-analyze")
    units = tmp_path / "units"
    units.mkdir()
    for name in (f"qpsmtpd-{mode}.socket", f"qpsmtpd-{mode}.service"):
        text = (REPO / "systemd" / name).read_text()
        for program in (f"qpsmtpd-{mode}", "in.qpsmtpd"):
            text = text.replace(f"/usr/local/bin/{program}", str(REPO / "bin" / program))
        (units / name).write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *(p.name for p in units.iterdir())],
                          capture_output=True, text=True, cwd=units, timeout=60)
    assert done.returncode == 0 and f"qpsmtpd-{mode}" not in done.stdout + done.stderr, done.stdout + done.stderr


@pytest.mark.parametrize("mode", ["forkserver", "prefork"])
def test_reload_runs_check_in_the_units_environment(smtp, mode):
    """`systemctl reload` runs the unit's ExecReload= lines with its Environment=: here by hand, the same way."""
    unit = (REPO / "systemd" / f"qpsmtpd-{mode}.service").read_text().splitlines()
    reload = [line.partition("=")[2].split() for line in unit if line.startswith("ExecReload=")]
    env = dict(line.partition("=")[2].split("=", 1) for line in unit if line.startswith("Environment="))
    assert reload == [["/usr/local/bin/in.qpsmtpd", "--check"]] and env == {"QPSMTPD_CONFIG": "/etc/qpsmtpd"}

    def run() -> subprocess.CompletedProcess:
        argv = [sys.executable, str(REPO / "bin" / "in.qpsmtpd"), *reload[0][1:]]
        return subprocess.run(argv, env={**os.environ, "QPSMTPD_CONFIG": str(smtp.dir)}, capture_output=True,
                              text=True, timeout=60)

    smtp.plugins("relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    done = run()
    assert done.returncode == 0 and f"ok: {smtp.dir}" in done.stdout, done.stdout + done.stderr
    smtp.plugins("relay", "rcpt_ok")  # an edit that would answer 451 to every message: the reload fails
    done = run()
    assert done.returncode == 1 and "no plugin has a queue hook" in done.stdout, done.stdout + done.stderr


def children(pid: int, state: str | None = None) -> int:
    """How many child processes `pid` has now (in `state`, as /proc names it: Z for exited, not reaped)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            if int(fields[1]) == pid and state in (None, fields[0]):
                count += 1
    return count


def until(condition, what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_prefork_pool_grows_to_its_limit_and_shrinks_back(smtp):
    s = Forkserver(smtp, "--children", "4", "--idle-children", "2", program=PREFORK)
    try:
        until(lambda: children(s.proc.pid) == 2, "two idle workers at start")
        held = [greeting(s.port) for _ in range(3)]
        for sock in held:
            assert sock.recv(100).startswith(b"220")
        until(lambda: children(s.proc.pid) == 4, "three busy and one idle: the limit, not five")
        assert send(s.port) == {}  # the idle worker serves it and exits; its successor keeps the pool at 4
        until(lambda: children(s.proc.pid) == 4, "a successor for the worker that served")
        for sock in held:
            sock.sendall(b"QUIT\r\n")
            sock.close()
        until(lambda: children(s.proc.pid) == 2, "back to two idle workers")
        assert len(smtp.messages()) == 1 and s.proc.poll() is None
    finally:
        assert s.stop() == 0, s.output()
