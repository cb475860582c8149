"""plugins/logging/syslog.py: lines reach a syslog socket with the right ident, facility and priority.

The session runs in a private mount namespace (unshare -m) whose /dev/log is a datagram socket this test
reads, so nothing touches the host's /dev or syslog. Skipped where unshare -m is not allowed.
"""

import re
import shutil
import socket
import subprocess
import sys

import pytest
from conftest import BIN, dialogue, simple_session

MOUNT_SCRIPT = """set -e
mount --make-rprivate /
mount --bind /dev "$D/olddev"
mount -t tmpfs tmpfs /dev
touch /dev/null /dev/log
mount --bind "$D/olddev/null" /dev/null
mount --bind "$D/log.sock" /dev/log
exec "$@"
"""
RECORD = re.compile(rb"^<(\d+)>\w{3} [ \d]\d \d\d:\d\d:\d\d (\S+)\[(\d+)\]: (.*)$", re.S)


def can_unshare():
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


needs_unshare = pytest.mark.skipif(not can_unshare(), reason="needs unshare -m (root in a mount namespace)")


def run_with_syslog(smtp, data):
    """Run one session; return (stdout, stderr, [(facility, severity, ident, pid, message), ...])."""
    (smtp.root / "olddev").mkdir()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(smtp.root / "log.sock"))
    env = smtp.env(D=str(smtp.root))
    proc = subprocess.run(["unshare", "-m", "sh", "-c", MOUNT_SCRIPT, "sh", sys.executable, str(BIN)],
                          input=data, capture_output=True, env=env, timeout=60)
    records = []
    sock.setblocking(False)
    while True:
        try:
            raw = sock.recv(65536)
        except BlockingIOError:
            break
        m = RECORD.match(raw)
        assert m, raw
        prio = int(m.group(1))
        records.append((prio >> 3, prio & 7, m.group(2).decode(), int(m.group(3)), m.group(4).decode()))
    sock.close()
    return proc.stdout, proc.stderr, records


@needs_unshare
def test_defaults_mail_facility_qpsmtpd_ident_level_priorities(smtp):
    smtp.write("logging", "logging/syslog loglevel LOGINFO")
    out, err, records = run_with_syslog(smtp, simple_session())
    assert out.endswith(b"221 2.0.0 mx.example.test closing connection. Have a wonderful day.\r\n")
    assert err == b""
    summary = [r for r in records if r[4].startswith("session from unknown[192.0.2.10]")]
    assert summary and summary[0][:3] == (2, 6, "qpsmtpd")  # LOG_MAIL, LOG_INFO
    assert any(r[4].startswith("(queue) queue/maildir: delivered") and r[1] == 6 for r in records)
    assert not any("<- '" in r[4] for r in records)  # LOGDEBUG is above LOGINFO
    assert len({r[3] for r in records}) == 1


@needs_unshare
def test_priority_ident_facility_arguments(smtp):
    smtp.write("logging", "logging/syslog loglevel 7 priority LOG_NOTICE ident qp-test facility local3 logsock unix")
    out, err, records = run_with_syslog(smtp, simple_session())
    assert err == b"" and out.endswith(b"Have a wonderful day.\r\n")
    assert records and all(r[:3] == (19, 5, "qp-test") for r in records)
    assert any("<- 'EHLO client.example" in r[4] for r in records)


@needs_unshare
def test_levels_map_to_syslog_severities(smtp):
    smtp.plugin("levels", "from qpsmtpd_stdio import LOGCRIT, LOGWARN\n"
                          "def hook_connect(plugin, txn):\n"
                          "    plugin.log(LOGCRIT, 'crit line')\n    plugin.log(LOGWARN, 'warn\\nline')\n")
    smtp.write("logging", "logging/syslog")  # default loglevel LOGWARN
    smtp.plugins("levels", "relay", "rcpt_ok")
    _, _, records = run_with_syslog(smtp, dialogue("QUIT"))
    assert [(r[1], r[4]) for r in records] == [(2, "(connect) levels: crit line"),
                                                (4, "(connect) levels: warn\\n line")]


@pytest.mark.parametrize("args, error", [
    ("loglevel", "key value"),
    ("loglevel LOGLOUD", "unknown loglevel"),
    ("facility nosuch", "unknown facility"),
    ("priority LOG_PID", "unknown priority"),
])
def test_bad_arguments_refuse_the_session(smtp, args, error):
    smtp.write("logging", f"logging/syslog {args}")
    r = smtp.run(simple_session())
    assert r.codes == [421] and error in r.log
