"""plugins/rcpt_ok.py: local domains from me/rcpthosts/morercpthosts, relaying denied otherwise."""

import os

import pytest
from conftest import dialogue

DENIED = b"550 5.7.1 Relaying denied (#5.7.1)\r\n"


def rcpt(smtp, address, **env):
    r = smtp.run(dialogue("EHLO c.example", "MAIL FROM:<a@example.org>", f"RCPT TO:<{address}>", "QUIT"), **env)
    r.assert_wellformed()
    return r


@pytest.fixture
def ok(smtp):
    smtp.write("rcpthosts", "example.test\n.sub.example\n@at.example\n")
    smtp.write("morercpthosts", "more.example")
    smtp.plugins("rcpt_ok")
    return smtp


@pytest.mark.parametrize("address", ["bob@example.test", "bob@EXAMPLE.Test", "bob@mx.example.test",
                                     "bob@a.sub.example", "bob@a.b.sub.example", "bob@at.example",
                                     "bob@more.example", "PostMaster@example.test", "postmaster"])
def test_local_accepted(ok, address):
    assert rcpt(ok, address).codes[3] == 250


@pytest.mark.parametrize("address", ["bob@elsewhere.example", "bob@sub.example", "bob@example.test.evil",
                                     "bob@xexample.test", "bob@[192.0.2.1]"])
def test_elsewhere_denied(ok, address):
    r = rcpt(ok, address)
    assert r.codes[3] == 550 and DENIED in r.stdout


@pytest.mark.parametrize("address", ['"x@elsewhere.example"@example.test', "x%elsewhere.example@example.test",
                                     "elsewhere.example!x@example.test"])
def test_routing_tricks_at_a_local_domain_denied(ok, address):
    assert rcpt(ok, address).codes[3] == 550


def test_relay_client_may_send_anywhere(ok):
    assert rcpt(ok, "x@elsewhere.example", RELAYCLIENT="").codes[3] == 250
    assert rcpt(ok, "x%y@example.test", RELAYCLIENT="").codes[3] == 250


def test_me_defaults_to_the_hostname(smtp):
    (smtp.dir / "me").unlink()
    smtp.write("rcpthosts", "example.test")
    smtp.plugins("rcpt_ok")
    assert rcpt(smtp, f"bob@{os.uname().nodename}").codes[3] == 250


# qmail's morercpthosts.cdb, as qpsmtpd reads it ------------------------------------------------------
def make_cdb(path, domains):
    """A cdb file made by a real cdb tool (Debian's tinycdb), as qmail-newmrh would: each domain a key."""
    import shutil
    import subprocess

    if shutil.which("cdb") is None:
        pytest.skip("tinycdb is not installed (Debian package tinycdb)")
    source = path.with_suffix(".txt")
    source.write_text("".join(f"{domain} \n" for domain in domains))
    subprocess.run(["cdb", "-c", "-m", str(path), str(source)], check=True, timeout=30)


def test_morercpthosts_cdb(ok):
    pytest.importorskip("cdblib", reason="pure-cdb is not installed (pip install 'qpsmtpd-stdio[cdb]')")
    make_cdb(ok.dir / "morercpthosts.cdb", ["cdb.example", "other.example"])
    assert rcpt(ok, "bob@cdb.example").codes[3] == 250
    assert rcpt(ok, "bob@CDB.example").codes[3] == 250
    assert rcpt(ok, "bob@sub.cdb.example").stdout.endswith(DENIED + b"221 2.0.0 mx.example.test closing connection. "
                                                                     b"Have a wonderful day.\r\n")  # keys, not suffixes
    assert rcpt(ok, "bob@example.test").codes[3] == 250  # rcpthosts still first


def test_a_damaged_cdb_defers_never_bounces(ok):
    (ok.dir / "morercpthosts.cdb").write_bytes(b"\x00" * 100)
    r = rcpt(ok, "bob@cdb.example")
    assert r.codes[3] == 450 and b"450 4.3.0 Cannot read the list of local domains" in r.stdout
    assert "cannot read" in r.log and "morercpthosts.cdb" in r.log
    assert rcpt(ok, "bob@example.test").codes[3] == 250  # found before the cdb is needed


def test_check_reports_a_damaged_cdb(ok):
    import subprocess
    import sys

    from conftest import BIN

    (ok.dir / "morercpthosts.cdb").write_bytes(b"\x00" * 100)
    done = subprocess.run([sys.executable, str(BIN), "--check", "--config", str(ok.dir)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert f"{ok.dir / 'morercpthosts.cdb'}: cannot read {ok.dir / 'morercpthosts.cdb'}" in done.stdout
