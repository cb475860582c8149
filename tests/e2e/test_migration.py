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
import time
from pathlib import Path

import pytest
from conftest import BIN
from scripteddns import QNAME, ScriptedDNS, record
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
# the same file in upstream's current tree (smtpd/qpsmtpd, config.sample/plugins), active lines
UPSTREAM_HEAD = """hosts_allow
ident/geoip
dont_require_anglebrackets
quit_fortune
check_earlytalker
count_unrecognized_commands 4
relay
resolvable_fromhost
rhsbl
dnsbl reject naughty
badmailfrom
badrcptto
helo
auth/auth_flat_file
auth/authdeny
rcpt_ok
headers days 5 reject_type temp require From,Date
domainkeys
virus/klez_filter
spamassassin reject 12
dspam learn_from_sa 7 reject 1
naughty
"""


def check(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BIN), "--check", "--config", str(config)], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def nxdomain():
    """A resolver that knows the sender's domain (an A record, for resolvable_fromhost) and nothing else, at once."""
    def answer(qname, qtype, question):
        if qname.lower() == "example.org":
            return 0, [record(QNAME, 1, bytes([192, 0, 2, 25]))] if qtype == 1 else []
        return 3, []

    server = ScriptedDNS(answer)
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


@pytest.mark.parametrize("sample, works, skipped", [
    (UPSTREAM_094, 24, ["dspam", "ident/geoip", "virus/klez_filter"]),
    (UPSTREAM_HEAD, 19, ["domainkeys", "dspam", "ident/geoip", "virus/klez_filter"]),
], ids=["0.94", "head"])
def test_upstream_config_sample_runs_with_its_skips_reported(smtp, nxdomain, sample, works, skipped):
    pytest.importorskip("dkim")
    pytest.importorskip("publicsuffixlist")
    smtp.write("plugins", sample + f"queue/maildir {smtp.maildir}")
    smtp.write("dns_servers", nxdomain.servers_line)
    smtp.write("spamd_socket", "")
    done = check(smtp.dir)
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert len([line for line in lines if ": works" in line or ": differs" in line]) == works
    assert sorted(line.split(": ")[1] for line in lines if ": skipped" in line) == skipped
    assert lines[-1] == f"ok: {smtp.dir}, with {len(skipped)} warning(s)"
    log = deliver(smtp, via="pipe")
    assert len(smtp.messages()) == 1, log
    assert "hosts_allow: differs:" in done.stdout  # upstream's first line: now a plugin of ours


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


# qpsmtpd's greylisting and karma databases, written by the real plugins ------------------------------
# Debian's 0.94 greylisting calls a method its library lacks (is_p0f_match: "FATAL PLUGIN ERROR", and no
# message is ever greylisted), so the test runs a copy of it with that one method added; everything that
# writes the database is qpsmtpd's own code.
P0F_SHIM = "\nsub is_p0f_match { my $self = shift; return 1 if !$self->{_args}{p0f}; return $self->p0f_match(@_) }\n"
SET_KARMA = "sub hook_data_post { my ($self) = @_; $self->connection->notes('karma', $ENV{QP_TEST_KARMA} || 0); " \
            "return DECLINED; }\n"


def test_greylisting_and_karma_databases_come_along(smtp, tmp_path):
    import realqpsmtpd

    if not (realqpsmtpd.AVAILABLE and (PERL_PLUGINS / "greylisting").exists()):
        pytest.skip(realqpsmtpd.SKIP_REASON)
    qp = tmp_path / "qp"
    (qp / "config").mkdir(parents=True)
    (qp / "perl").mkdir()
    (qp / "db").mkdir()
    (qp / "perl" / "greylisting").write_text((PERL_PLUGINS / "greylisting").read_text() + P0F_SHIM)
    (qp / "perl" / "set_karma").write_text(SET_KARMA)
    for name in ("me", "rcpthosts"):
        shutil.copy(smtp.dir / name, qp / "config" / name)
    (qp / "config" / "plugin_dirs").write_text(f"{qp / 'perl'}\n{PERL_PLUGINS}\n")
    (qp / "config" / "plugins").write_text(f"karma\ngreylisting black_timeout 1 sender 1 db_dir {qp / 'db'}\n"
                                           f"rcpt_ok\nset_karma\nqueue/maildir {qp / 'Maildir'}\n")
    wire = (b"EHLO c.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
            b"From: <a@example.org>\r\nSubject: s\r\n\r\nhi\r\n.\r\nQUIT\r\n")

    def qpsmtpd(ip: str, karma: int = 0) -> list[int]:
        return realqpsmtpd.codes(realqpsmtpd.session(qp / "config", wire, qp / "qp.log", TCPREMOTEIP=ip,
                                                     QP_TEST_KARMA=str(karma)))

    assert qpsmtpd("192.0.2.77")[2] == 450            # new: greylisted
    time.sleep(1.2)
    assert qpsmtpd("192.0.2.77", karma=3)[-2] == 250  # retried: whitelisted, and a nice connection for karma
    assert qpsmtpd("192.0.2.88")[2] == 450            # greylisted, never retried
    karma_db = next(qp.rglob("karma.dbm"))

    # black_timeout 0: a record qpsmtpd left grey is past its wait at once, whenever this runs
    smtp.plugins("karma", "greylisting black_timeout 0 sender 1", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    for plugin, path, count in (("greylisting", qp / "db" / "greylist.dbm", 2), ("karma", karma_db, 1)):
        done = subprocess.run([sys.executable, str(BIN), "--config", str(smtp.dir), "--import-qpsmtpd-db", plugin,
                               str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and f"{count} records imported" in done.stdout, done.stdout + done.stderr
    session = b"EHLO c.example\r\nMAIL FROM:<a@example.org>\r\nQUIT\r\n"
    assert smtp.run(session, TCPREMOTEIP="192.0.2.77").codes == [220, 250, 250, 221]  # known: not greylisted again
    r = smtp.run(session, TCPREMOTEIP="192.0.2.88")
    assert r.codes == [220, 250, 250, 221] and "pass, grey -> white" in r.log  # its retry, after the move
    assert smtp.run(session, TCPREMOTEIP="192.0.2.99").codes == [220, 250, 450, 221]  # a stranger
    import sqlite3

    with sqlite3.connect(smtp.dir / "qpsmtpd.sqlite") as db:
        assert db.execute("SELECT naughty, nice FROM karma WHERE ip = '192.0.2.77'").fetchall() == [(0, 1)]
    again = subprocess.run([sys.executable, str(BIN), "--config", str(smtp.dir), "--import-qpsmtpd-db", "greylisting",
                            str(qp / "db" / "greylist.dbm")], capture_output=True, text=True, timeout=60)
    assert "0 records imported into the greylist table, 2 kept as we had them" in again.stdout
