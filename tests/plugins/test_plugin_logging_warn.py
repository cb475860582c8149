"""plugins/logging/warn.py: lines at or below its level to stderr, never to a socket."""

import socket
import subprocess
import sys

from conftest import REPO, dialogue, simple_session


def test_lines_at_or_below_level_to_stderr(smtp):
    smtp.write("logging", "logging/warn LOGINFO")  # config/loglevel is 7: the filter is the plugin's
    r = smtp.run(simple_session())
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    lines = r.log.splitlines()
    assert any(" (queue) queue/maildir: delivered " in line for line in lines)
    assert any(" session from unknown[192.0.2.10]:40000" in line for line in lines)
    assert not any("<- '" in line for line in lines)  # LOGDEBUG
    assert all(line.split(" ", 1)[0].isdigit() for line in lines)


def test_default_level_is_logwarn(smtp):
    smtp.plugin("levels", "from qpsmtpd_stdio import LOGWARN, LOGNOTICE\n"
                          "def hook_connect(plugin, txn):\n"
                          "    plugin.log(LOGWARN, 'warn line')\n    plugin.log(LOGNOTICE, 'notice line')\n")
    smtp.write("logging", "logging/warn")
    smtp.plugins("levels", "relay", "rcpt_ok")
    r = smtp.run(dialogue("QUIT"))
    assert r.log.splitlines() == [r.log.split(" ", 1)[0] + " (connect) levels: warn line"]


def test_nothing_on_the_wire_under_inetd(smtp):
    smtp.write("logging", "logging/warn LOGDEBUG")
    r = smtp.run(simple_session(), via="socketpair")
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]


def test_plugin_itself_never_writes_to_a_socket_on_fd_2(tmp_path):
    # Without the core's own guard: fd 2 is a socket when the plugin registers.
    script = f"""
import os, socket, sys
sys.path.insert(0, {str(REPO)!r})
path = {str(REPO / "plugins" / "logging" / "warn.py")!r}
ns = {{"__name__": "warn"}}
exec(compile(open(path).read(), path, "exec"), ns)
class P: name = "logging/warn"
p = P()
ns["register"](p, "LOGDEBUG")
ns["hook_logging"](p, None, 0, "connect", "x", "must not appear")
"""
    ours, theirs = socket.socketpair()
    with ours:
        subprocess.run([sys.executable, "-c", script], stderr=theirs, timeout=30, check=True)
        theirs.close()
        ours.settimeout(5)
        assert ours.recv(1000) == b""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30, check=True)
    assert done.stderr.endswith(b" (connect) x: must not appear\n")  # the same call with fd 2 a pipe
