"""contrib/fail2ban: the filter finds the client's address in real log lines, with Debian's fail2ban-regex."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import pytest

from conftest import REPO, dialogue

FILTER = REPO / "contrib" / "fail2ban" / "filter.d" / "qpsmtpd-stdio.conf"
pytestmark = pytest.mark.skipif(shutil.which("fail2ban-regex") is None, reason="needs fail2ban (apt-get install fail2ban)")


def auth(user: str, password: str) -> str:
    return "AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def test_filter_matches_each_failure_and_only_the_client_address(smtp):
    log = smtp.root / "qpsmtpd.log"
    smtp.write("logging", f"logging/file loglevel LOGNOTICE {log}")
    smtp.plugins("auth/auth_flat_file", "rcpt_ok")
    smtp.write("flat_auth_pw", "alice@example.test:right")
    for name, value in (("tls_before_auth", "0"), ("disable_plaintext_auth", "0"), ("auth_failure_delay", "0")):
        smtp.write(name, value)
    forged = "AUTH PLAIN failed from [203.0.113.9] for x@example.test"  # a user name that tries to frame someone
    r = smtp.run(dialogue("EHLO x", auth("alice@example.test", "wrong"), auth(forged, "x"), "QUIT"))
    assert r.codes == [220, 250, 535, 535, 221], r.stdout
    r = smtp.run(dialogue("EHLO x", auth("alice@example.test", "right"), "QUIT"), TCPREMOTEIP="2001:db8::7")
    assert r.codes == [220, 250, 235, 221]
    done = subprocess.run(["fail2ban-regex", "--print-all-matched", "--raw", str(log), str(FILTER)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.search(r"Lines: \d+ lines, 0 ignored, 2 matched", done.stdout), done.stdout
    hosts = subprocess.run(["fail2ban-regex", "--out", "ip", str(log), str(FILTER)],
                           capture_output=True, text=True, timeout=60).stdout.split()
    assert hosts == ["192.0.2.10", "192.0.2.10"], hosts
