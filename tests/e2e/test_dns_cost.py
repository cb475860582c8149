"""What DNS costs a connection: imports (python -X importtime) and, with a dead DNS server, the time budget."""

import re
import time

import pytest
from conftest import SIMPLE_BODY, dialogue
from dnsserver import dns_server

DNS_PLUGINS = ("dnsbl", "rhsbl", "fcrdns", "resolvable_fromhost", "spf reject 2")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from dns_server(tmp_path_factory, [
        "host-record=mail.example.org,192.0.2.25", "mx-host=example.org,mail.example.org,10",
        'txt-record=example.org,"v=spf1 ip4:192.0.2.10 -all"',
        "ptr-record=10.2.0.192.in-addr.arpa,client.example.org", "host-record=client.example.org,192.0.2.10",
    ])


def imported(result):
    """Module names from PYTHONPROFILEIMPORTTIME lines on stderr."""
    return {m.group(1) for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)", result.log, re.M)}


def session(smtp, sender="a@example.org", **env):
    data = dialogue("EHLO client.example.org", f"MAIL FROM:<{sender}>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                    body=SIMPLE_BODY.replace("a@example.org", sender))
    return smtp.run(data, **env)


def test_no_dns_plugin_no_dns_import(smtp):
    r = session(smtp, PYTHONPROFILEIMPORTTIME="1")
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    modules = imported(r)
    assert "qpsmtpd_stdio.session" in modules  # the profile is there
    assert not {m for m in modules if m == "dns" or m.startswith(("dns.", "qpsmtpd_stdio.dns", "qpsmtpd_stdio.spf"))}


def test_dns_plugins_import_nothing_from_dnspython(smtp, server):
    smtp.write("dns_servers", server.servers_line)
    smtp.write("dnsbl_zones", "bl.test")
    smtp.write("rhsbl_zones", "rhs.test")
    smtp.plugins("relay", *DNS_PLUGINS, "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = session(smtp, PYTHONPROFILEIMPORTTIME="1")
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    message = smtp.messages()[0]
    assert b"spf=pass smtp.mailfrom=example.org" in message and b"iprev=pass" in message
    modules = imported(r)
    assert {"qpsmtpd_stdio.dns", "qpsmtpd_stdio.spf"} <= modules
    assert not {m for m in modules if m == "dns" or m.startswith("dns.")}


def test_dead_dns_costs_at_most_the_budget(smtp, server):
    """Every DNS plugin waits on a server that never answers: the session still ends, within the budget."""
    smtp.write("dns_servers", server.servers_line)
    smtp.write("dns_timeout", "1.5")  # a second try is under way when the budget runs out
    smtp.write("dns_budget", "2")
    smtp.write("dnsbl_zones", "bl.dead.test")
    smtp.write("rhsbl_zones", "rhs.dead.test")
    smtp.plugins("relay", *DNS_PLUGINS, "rcpt_ok", f"queue/maildir {smtp.maildir}")
    data = dialogue("EHLO client.example.org", "MAIL FROM:<a@x.dead.test>", "MAIL FROM:<a@example.org>",
                    "RCPT TO:<bob@example.test>", "QUIT")
    started = time.monotonic()
    r = smtp.run(data, TCPREMOTEIP="192.0.2.77")
    assert time.monotonic() - started < 2 + 10  # generous: unbudgeted, these queries would wait about 20 s
    assert r.codes == [220, 250, 450, 450, 503, 221]  # temporary, never 5xx; the second MAIL fails at once
    assert b"450 4.4.3 Temporary failure looking up x.dead.test (MX: TIMEOUT)" in r.stdout
    assert "DNS budget of 2s spent" in r.log
