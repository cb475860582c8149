"""End to end under the real superservers, configured from the shipped files: xinetd, tcpserver, systemd-socket-activate.

Each test starts its server on a loopback address and a free high port, sends
mail with swaks and with smtplib, reads the Maildir, and stops the server by
PID. See tests/support/superserver.py for how the shipped files become test configs.
"""

from __future__ import annotations

import re
import shlex
import smtplib
import socket
import subprocess

import pytest

from conftest import BIN, REPO, REPLY_LINE
from superserver import (
    SHIPPED_CONFIG_DIR,
    SHIPPED_SERVER,
    Client,
    Server,
    clean_env,
    free_port,
    log_to_file,
    message_ids,
    need,
    need_ipv6,
    python_path,
    received_ip,
    start_xinetd,
    user_and_group,
)

BODY = "From: a@example.org\r\nSubject: {id}\r\nMessage-Id: <{id}>\r\n\r\nHello from {id}.\r\n"


def swaks(host: str, port: int, msg_id: str, to: str = "bob@example.test", *extra: str) -> subprocess.CompletedProcess:
    need("swaks")
    argv = ["swaks", "--server", host, "--port", str(port), "--helo", "swaks.example", "--from", "a@example.org",
            "--to", to, "--header", f"Message-Id: <{msg_id}>", "--header", f"Subject: {msg_id}",
            "--body", f"Hello from {msg_id}.", "--timeout", "30", *extra]
    if ":" in host:
        argv.append("-6")
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def smtplib_send(host: str, port: int, msg_id: str, to: str = "bob@example.test", source: str | None = None) -> dict:
    with smtplib.SMTP(host, port, local_hostname="smtplib.example", timeout=30,
                      source_address=(source, 0) if source else None) as client:
        return client.sendmail("a@example.org", [to], BODY.format(id=msg_id))


def by_id(smtp) -> dict[str, bytes]:
    messages = smtp.messages()
    return dict(zip(message_ids(messages), messages))


def assert_delivered(smtp, expected: dict[str, str]) -> None:
    """Each Message-Id in `expected` is in the Maildir once, its Received header naming the client IP given."""
    found = by_id(smtp)
    assert sorted(found) == sorted(expected), found.keys()
    assert len(smtp.messages()) == len(expected)
    for msg_id, ip in expected.items():
        assert received_ip(found[msg_id]) == ip
        assert f"Hello from {msg_id}.".encode() in found[msg_id]
    assert smtp.leftovers() == []


# xinetd --------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_xinetd_swaks_and_smtplib(smtp, host):
    if ":" in host:
        need_ipv6()
    server = start_xinetd(smtp, host)
    try:
        done = swaks(host, server.port, "swaks@test")
        assert done.returncode == 0, done.stdout + done.stderr
        assert re.search(r"<- +250 2\.0\.0 Queued! <swaks@test>", done.stdout), done.stdout
        assert smtplib_send(host, server.port, "smtplib@test") == {}
        expected = {"swaks@test": host, "smtplib@test": host}
        if host == "127.0.0.1":
            # The address is the real peer's, whichever it is: send from another loopback address too.
            assert smtplib_send(host, server.port, "other-source@test", source="127.0.0.7") == {}
            expected["other-source@test"] = "127.0.0.7"
        assert_delivered(smtp, expected)
    finally:
        server.stop()
    # xinetd logged the sessions with the shipped log_on_success items.
    assert re.search(r"START: smtp pid=\d+ from=", (smtp.root / "xinetd.log").read_text())


def test_xinetd_stderr_on_socket_client_sees_only_replies(smtp):
    """fd 2 is the socket under xinetd: a plugin that raises, prints and warns at loglevel 7 puts nothing on the wire."""
    log = smtp.root / "session.log"
    log_to_file(smtp, log)
    smtp.write("loglevel", "7")
    smtp.plugin("noisy", (
        "import os, sys, warnings\n"
        "def hook_connect(plugin, txn):\n"
        "    print('printed by noisy')\n"
        "    sys.stderr.write('written to sys.stderr by noisy\\n')\n"
        "    warnings.warn('warned by noisy')\n"
        "    os.write(2, b'written to fd 2 by noisy\\n')\n"
        "def hook_rcpt(plugin, txn, rcpt, params):\n"
        "    if rcpt.user == 'boom':\n"
        "        raise RuntimeError('noisy exploded')\n"))
    smtp.plugins("noisy", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    server = start_xinetd(smtp)
    try:
        client = Client("127.0.0.1", server.port)
        assert client.reply()[0] == 220
        assert client.command("EHLO c.example") == 250
        assert client.command("MAIL FROM:<a@example.org>") == 250
        assert client.command("RCPT TO:<boom@example.test>") == 450  # fails closed
        assert client.command("RCPT TO:<bob@example.test>") == 250
        assert client.command("DATA") == 354
        assert client.command(b"Subject: x\r\nMessage-Id: <plugin-raised@test>\r\n\r\nbody\r\n.\r\n") == 250
        assert client.command("QUIT") == 221
        assert client.rest() == b""
        client.close()
    finally:
        server.stop()
    wire = client.received
    rest = wire
    while rest:
        m = REPLY_LINE.match(rest)
        assert m, f"not an SMTP reply on the wire: {rest[:200]!r}"
        rest = rest[m.end():]
    for noise in (b"noisy", b"Traceback", b"RuntimeError", b"warn"):
        assert noise not in wire
    text = log.read_text()
    for line in ("printed by noisy", "written to sys.stderr by noisy", "warned by noisy", "RuntimeError: noisy exploded"):
        assert line in text
    assert "written to fd 2 by noisy" not in text  # fd 2 is /dev/null: neither on the wire nor anywhere
    assert message_ids(smtp.messages()) == ["plugin-raised@test"]


# tcpserver ------------------------------------------------------------------------------
def start_tcpserver(smtp, host: str = "127.0.0.1") -> Server:
    """The shipped tcpserver/run script, with the shipped rules compiled by tcprules."""
    need("tcpserver", "tcprules")
    rules = smtp.root / "tcp.cdb"
    with open(REPO / "tcpserver" / "rules.example", "rb") as source:
        subprocess.run(["tcprules", str(rules), str(smtp.root / "tcp.tmp")], stdin=source, check=True)
    port = free_port(host)
    user, _ = user_and_group()
    env = clean_env(QPSMTPD_CONFIG=str(smtp.dir), IP=host, PORT=str(port), RULES=str(rules),
                    QPSMTPD_USER=user, IN_QPSMTPD=str(BIN))
    return Server("tcpserver", ["sh", str(REPO / "tcpserver" / "run")], port, host, smtp.root / "tcpserver.log",
                  env, smtp.root)


def test_tcpserver_swaks_smtplib_and_tcprules_relayclient(smtp):
    server = start_tcpserver(smtp)
    try:
        done = swaks("127.0.0.1", server.port, "swaks@test")
        assert done.returncode == 0, done.stdout + done.stderr
        # 127.0.0.1 has RELAYCLIENT="" in the shipped rules: it may relay.
        assert smtplib_send("127.0.0.1", server.port, "relayed@test", to="someone@elsewhere.example") == {}
        # 127.0.0.2 falls to `:allow`: local domains only.
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtplib_send("127.0.0.1", server.port, "refused@test", to="someone@elsewhere.example", source="127.0.0.2")
        assert refused.value.recipients["someone@elsewhere.example"][0] == 550
        assert smtplib_send("127.0.0.1", server.port, "local@test", source="127.0.0.2") == {}
        assert_delivered(smtp, {"swaks@test": "127.0.0.1", "relayed@test": "127.0.0.1", "local@test": "127.0.0.2"})
    finally:
        server.stop()
    out = server.output()
    assert re.search(r"tcpserver: pid \d+ from 127\.0\.0\.2\n", out), out
    # in.qpsmtpd's log went to the run script's stderr, not to the client.
    assert "session from" in out


# systemd --------------------------------------------------------------------------------
def unit_settings(name: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (REPO / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def start_socket_activate(smtp, host: str, stdio: bool) -> Server:
    """systemd-socket-activate with the shipped units' ExecStart and Environment (paths changed).

    stdio: `--inetd -a`, the connection on fd 0/1 as StandardInput=socket gives;
    else `-a`, the connection as fd 3 by the LISTEN_FDS protocol.
    """
    need("systemd-socket-activate")
    service = unit_settings("qpsmtpd-stdio@.service")
    socket_unit = unit_settings("qpsmtpd-stdio.socket")
    assert socket_unit["Accept"] == ["yes"] and service["StandardInput"] == ["socket"]
    port = free_port(host)
    argv = ["systemd-socket-activate", "-a", "-l", f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    if stdio:
        argv.insert(1, "--inetd")
    for assignment in service["Environment"]:
        argv += ["-E", assignment.replace(SHIPPED_CONFIG_DIR, str(smtp.dir))]
    argv += ["-E", f"PATH={python_path()}"]
    argv += [word.replace(SHIPPED_SERVER, str(BIN)) for word in shlex.split(service["ExecStart"][0])]
    return Server("systemd-socket-activate", argv, port, host, smtp.root / "journal.log", clean_env(), smtp.root)


@pytest.mark.parametrize("stdio", [True, False], ids=["inetd-stdio", "listen-fds"])
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_systemd_socket_activate(smtp, host, stdio):
    if ":" in host:
        need_ipv6()
    server = start_socket_activate(smtp, host, stdio)
    try:
        done = swaks(host, server.port, "swaks@test")
        assert done.returncode == 0, done.stdout + done.stderr
        assert smtplib_send(host, server.port, "smtplib@test") == {}
        assert_delivered(smtp, {"swaks@test": host, "smtplib@test": host})
    finally:
        server.stop()
    # stderr is not the socket here (StandardError=journal): the session log went there.
    assert "session from" in server.output()


def test_systemd_units_verify(smtp, tmp_path):
    """systemd-analyze accepts the shipped units without a warning (ExecStart pointed at this checkout)."""
    need("systemd-analyze")
    units = tmp_path / "units"
    units.mkdir()
    for name in ("qpsmtpd-stdio.socket", "qpsmtpd-stdio@.service"):
        text = (REPO / "systemd" / name).read_text().replace(SHIPPED_SERVER, str(BIN))
        (units / name).write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", "qpsmtpd-stdio.socket", "qpsmtpd-stdio@.service"],
                          capture_output=True, text=True, cwd=units, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in (done.stdout + done.stderr).splitlines() if "qpsmtpd-stdio" in line]
    assert warnings == []


# inetd ------------------------------------------------------------------------------------
def test_inetd_line_runs_a_session(smtp):
    """The shipped inetd.conf line's program and arguments, run as inetd runs them: the socket on fd 0, 1 and 2."""
    [line] = [l for l in (REPO / "inetd.conf.example").read_text().splitlines() if l.startswith("smtp")]
    fields = line.split()
    assert fields[1:3] == ["stream", "tcp"] and fields[3].startswith("nowait")
    program = fields[5].replace(SHIPPED_SERVER, str(BIN))
    argv = [a.replace(SHIPPED_CONFIG_DIR, str(smtp.dir)) for a in fields[6:]]
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([program, *argv[1:]], executable=program, stdin=theirs, stdout=theirs, stderr=theirs,
                            env={"PATH": python_path()})  # inetd passes no QPSMTPD_CONFIG: --config does it
    theirs.close()
    ours.settimeout(30)
    ours.sendall(b"EHLO c.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
                 b"Message-Id: <inetd@test>\r\n\r\nHello.\r\n.\r\nQUIT\r\n")
    ours.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := ours.recv(65536):
        data += chunk
    assert proc.wait(30) == 0
    assert data.endswith(b"221 2.0.0 mx.example.test closing connection. Have a wonderful day.\r\n"), data
    assert message_ids(smtp.messages()) == ["inetd@test"]
