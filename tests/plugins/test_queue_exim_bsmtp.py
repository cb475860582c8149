"""queue/exim-bsmtp with the real Exim from Debian's package, unpacked (it cannot be installed beside Postfix)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from conftest import dialogue

ROOT = Path(os.environ.get("QPSMTPD_TEST_EXIM", "/opt/exim-unpacked"))
EXIM = ROOT / "usr" / "sbin" / "exim4"


def have_exim() -> bool:
    try:
        pwd.getpwnam("Debian-exim")  # the user Debian's build of Exim names
    except KeyError:
        return False
    return EXIM.is_file() and os.geteuid() == 0


pytestmark = pytest.mark.skipif(not have_exim(), reason="needs Exim unpacked in /opt/exim-unpacked (.ci/run does it), "
                                                        "its Debian-exim user, and root")
CONFIG = """primary_hostname = mx.example.test
spool_directory = {spool}
exim_user = root
exim_group = root
never_users =
trusted_users = root
log_file_path = {spool}/%slog
keep_environment =
acl_not_smtp = check_message
begin acl
check_message:
  deny condition = ${{if eq{{$recipients}}{{blocked@example.test}}}}
       message = no such user here
  accept
begin routers
all:
  driver = accept
  transport = nowhere
begin transports
nowhere:
  driver = appendfile
  file = /dev/null
"""


@pytest.fixture
def exim(smtp, tmp_path):
    spool = tmp_path / "exim-spool"
    spool.mkdir()
    conf = tmp_path / "exim.conf"
    conf.write_text(CONFIG.format(spool=spool))
    wrapper = tmp_path / "exim-bsmtp"  # the real binary with a private config, queueing only
    wrapper.write_text(f"#!/bin/sh\nLD_LIBRARY_PATH={ROOT}/usr/lib/x86_64-linux-gnu exec {EXIM} -C {conf} -odq "
                       "\"$@\"\n")
    wrapper.chmod(0o755)
    smtp.plugins("rcpt_ok", f"queue/exim-bsmtp exim_path {wrapper}")

    def queued() -> list[str]:
        """The messages in Exim's queue, as its -D (data) files hold them."""
        return sorted(p.read_text() for p in (spool / "input").rglob("*-D")) if (spool / "input").is_dir() else []

    return queued


def test_exim_takes_the_message_with_dots_intact(smtp, exim):
    # The client's message is ".leading", "..two", "plain", ".", "end": stuffed on the wire as SMTP wants.
    wire = (b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<eve@example.test>\r\n"
            b"DATA\r\nSubject: dots\r\n\r\n..leading\r\n...two\r\nplain\r\n..\r\nend\r\n.\r\nQUIT\r\n")
    r = smtp.run(wire)
    assert r.codes == [220, 250, 250, 250, 250, 354, 250, 221], r.log
    assert b"250 2.0.0 Queued!" in r.stdout
    [data] = exim()
    assert data.endswith("\n.leading\n..two\nplain\n.\nend\n"), data  # Exim unstuffed what we stuffed


def test_exim_refusal_is_passed_on(smtp, exim):
    r = smtp.run(dialogue("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<blocked@example.test>", "DATA", "QUIT",
                          body="Subject: x\r\n\r\nx"))
    assert r.codes[5] == 554 and b"no such user here" in r.stdout, r.stdout
    assert exim() == []


def test_exim_missing_is_451(smtp, tmp_path):
    smtp.plugins("rcpt_ok", f"queue/exim-bsmtp exim_path {tmp_path / 'no-exim'}")
    r = smtp.run(dialogue("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                          body="Subject: x\r\n\r\nx"))
    assert r.codes[5] == 451
