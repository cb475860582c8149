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
