"""A qpsmtpd site's config directory moved over as it is: Debian's /etc/qpsmtpd and upstream's config.sample.

Each runs unchanged but for a queue line, delivers a message from a real
client (smtplib, which waits for the greeting as earlytalker wants), and
`--check` reports every plugin line: works, differs, skipped or refused.
"""

from __future__ import annotations

import email.utils
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIN
from scripteddns import ScriptedDNS
from test_tls import Running, SocketSMTP

DEBIAN_ETC = Path("/etc/qpsmtpd")
PERL_PLUGINS = Path("/usr/share/qpsmtpd/plugins")
# upstream's config.sample/plugins of qpsmtpd 0.94, active lines (the file's comments left out)
UPSTREAM_094 = """hosts_allow
ident/geoip
fcrdns
quit_fortune
earlytalker
count_unrecognized_commands 4
relay
dnsbl reject naughty reject_type disconnect
rhsbl
helo policy strict reject 0
auth/auth_flat_file
auth/authdeny
dont_require_anglebrackets
badmailfrom reject naughty
resolvable_fromhost reject 0
sender_permitted_from reject 1
badrcptto
rcpt_ok
headers reject 0 reject_type temp require From,Date future 2 past 15
bogus_bounce log
dkim reject 0
dmarc
virus/klez_filter
spamassassin reject 12
dspam learn_from_sa 7 reject 1
naughty reject data
"""


def check(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BIN), "--check", "--config", str(config)], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def nxdomain():
    server = ScriptedDNS(lambda qname, qtype, question: (3, []))  # a resolver that knows nothing, at once
    yield server
    server.close()


def deliver(smtp, via="socketpair") -> str:
    server = Running(smtp, via)
    client = SocketSMTP(server.sock)
    message = (f"From: <a@example.org>\r\nTo: <bob@example.test>\r\nDate: {email.utils.formatdate()}\r\n"
               "Message-ID: <migration.1@example.org>\r\nSubject: moving over\r\n\r\nhello\r\n")
    refused = client.sendmail("a@example.org", ["bob@example.test"], message)
    assert refused == {}
    client.quit()
    return server.finish()


@pytest.mark.skipif(not DEBIAN_ETC.is_dir(), reason="Debian's qpsmtpd package is not installed")
def test_debians_etc_qpsmtpd_runs_and_delivers(smtp, nxdomain):
    shutil.rmtree(smtp.dir)
    shutil.copytree(DEBIAN_ETC, smtp.dir)
    plugins = (smtp.dir / "plugins").read_text()
    assert "check_spamhelo" in plugins and "check_relay" in plugins
    smtp.write("plugins", plugins + f"queue/maildir {smtp.maildir}\n")
    smtp.write("logging", "")  # Debian's logs to /var/log/qpsmtpd, which is not the test's to write
    smtp.write("rcpthosts", "example.test")
    smtp.write("dns_servers", nxdomain.servers_line)
    done = check(smtp.dir)
    assert done.returncode == 0, done.stdout
    assert ": check_spamhelo: works, as `helo policy lenient`" in done.stdout
    assert ": check_relay: works, as `relay`" in done.stdout
    log = deliver(smtp)
    assert len(smtp.messages()) == 1, log
    r = smtp.run(b"HELO localhost\r\nQUIT\r\n")  # Debian's wrapper runs helo, whose lenient policy refuses this
    assert r.codes[:2] == [220, 550] and b"You are not localhost" in r.stdout


def test_upstream_config_sample_runs_with_its_skips_reported(smtp, nxdomain):
    pytest.importorskip("dkim")
    pytest.importorskip("publicsuffixlist")
    smtp.write("plugins", UPSTREAM_094 + f"queue/maildir {smtp.maildir}")
    smtp.write("dns_servers", nxdomain.servers_line)
    smtp.write("spamd_socket", "")
    done = check(smtp.dir)
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert len([line for line in lines if ": works" in line or ": differs" in line]) == 22
    skipped = sorted(line.split(": ")[1] for line in lines if ": skipped" in line)
    assert skipped == ["dspam", "hosts_allow", "ident/geoip", "quit_fortune", "virus/klez_filter"]
    assert lines[-1] == f"ok: {smtp.dir}, with 5 warning(s)"
    log = deliver(smtp, via="pipe")
    assert len(smtp.messages()) == 1, log
    assert "plugin hosts_allow not loaded (core: per-client limits" in log


def test_instances_perl_plugins_and_refusals(smtp):
    site = smtp.root / "site-perl"
    site.mkdir()
    (site / "our_check").write_text("sub hook_rcpt { return DECLINED }\n1;\n")
    smtp.write("plugin_dirs", f"{smtp.plugin_dir}\n{site}")
    smtp.write("badmailfrom", "spammer@example.org")
    smtp.plugins("badmailfrom", "badmailfrom:1 reject naughty", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(b"EHLO c\r\nMAIL FROM:<spammer@example.org>\r\nQUIT\r\n")
    assert r.codes == [220, 250, 550, 221]
    assert "badmailfrom:1" in check(smtp.dir).stdout
    for line, said in (("our_check", f"{site / 'our_check'} is a qpsmtpd Perl plugin; qpsmtpd-stdio runs Python "
                                      "plugins (see docs/porting.md)"),
                       ("virus/sophie", "refused, as mail could pass unchecked without it: use `virus/clamdscan`")):
        smtp.plugins(line, "rcpt_ok", f"queue/maildir {smtp.maildir}")
        r = smtp.run(b"EHLO c\r\nQUIT\r\n")
        assert r.codes == [421], r.stdout  # fail closed: no mail goes unchecked
        assert said in r.log
        done = check(smtp.dir)
        assert done.returncode == 1 and said in done.stdout


@pytest.mark.skipif(not PERL_PLUGINS.is_dir(), reason="Debian's qpsmtpd package is not installed")
def test_every_plugin_debian_ships_has_a_policy():
    from qpsmtpd_stdio import compat

    shipped = sorted(str(p.relative_to(PERL_PLUGINS)) for p in PERL_PLUGINS.rglob("*")
                     if p.is_file() and p.name != "registry.txt")
    assert shipped == sorted(compat.QPSMTPD_PLUGINS) and len(shipped) == 91
