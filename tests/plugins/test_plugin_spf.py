"""SPF end to end: RFC 7208 suite sections served by dnsmasq, and the plugins sender_permitted_from / spf."""

import re

import pytest
from dnsserver import DNSServer, dnsmasq_path, dns_server, requires_dnsmasq
from test_spf import SUITE, Zone

from qpsmtpd_stdio import dns
from qpsmtpd_stdio.spf import check_host, resolver_lookup
from qpsmtpd_stdio.testing import Harness

# Sections served whole by dnsmasq; their cases that touch a name dnsmasq cannot serve (a TIMEOUT
# entry, odd characters, non-ASCII text) are left to the dict-backed run in test_spf.py.
E2E_SECTIONS = ("A mechanism syntax", "MX mechanism syntax", "Include mechanism semantics and syntax",
                "PTR mechanism syntax", "Semantics of exp and other modifiers", "Macro expansion rules")
_SERVABLE = re.compile(r"^[A-Za-z0-9_.-]+$")


def servable(name, entries):
    values = [str(v) for e in entries if isinstance(e, dict) for v in e.values()]
    return _SERVABLE.match(name) and "TIMEOUT" not in entries and all(
        " " <= c <= "~" and c not in '"\\' for v in values for c in v)


def dnsmasq_lines(section):
    """dnsmasq options for the servable names of a section's zone data (SPF records served as TXT).

    Every top-level domain the section's cases ask about is answered locally: a name with no data is
    NXDOMAIN there, as in the suite, not REFUSED.
    """
    lines = []
    tlds = {name.lower().rstrip(".").rpartition(".")[2] for name in section["zonedata"]}
    for case in section["tests"].values():
        zone = Zone(section["zonedata"])
        check_host(case["host"], case["mailfrom"], case["helo"], zone)
        tlds |= {asked.lower().rstrip(".").rpartition(".")[2] for asked, _ in zone.asked}
    for name, entries in section["zonedata"].items():
        if not servable(name, entries):
            continue
        has_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
        addresses = []
        for entry in entries:
            (rdtype, value), = entry.items()
            if rdtype == "SPF" and has_txt or value == "NONE":
                continue
            if rdtype in ("SPF", "TXT"):
                parts = value if isinstance(value, list) else [value]
                lines.append(f"txt-record={name}," + ",".join(f'"{p}"' for p in parts))
            elif rdtype in ("A", "AAAA"):
                addresses.append(value)
            elif rdtype == "MX":
                lines.append(f"mx-host={name},{value[1] or '.'},{value[0]}")
            elif rdtype == "PTR":
                lines.append(f"ptr-record={name},{value.rstrip('.')}")
        lines += [f"host-record={name},{address}" for address in addresses]  # one address a line
    return [f"local=/{tld}/" for tld in sorted(tlds) if _SERVABLE.match(tld)] + lines


def e2e_cases():
    for section in SUITE["sections"]:
        if section["description"] not in E2E_SECTIONS:
            continue
        unservable = {n.lower().rstrip(".") for n, e in section["zonedata"].items() if not servable(n, e)}
        for name, case in section["tests"].items():
            zone = Zone(section["zonedata"])
            check_host(case["host"], case["mailfrom"], case["helo"], zone)
            asked = [n.lower().rstrip(".") for n, _ in zone.asked]
            if not any(n in unservable or not _SERVABLE.match(n) for n in asked):
                yield section, name, case


@pytest.fixture(scope="module")
def section_servers(tmp_path_factory):
    """One dnsmasq per section (their zone data overlap), started on first use."""
    started = {}
    yield lambda section: started.get(section["description"]) or started.setdefault(
        section["description"],
        DNSServer(tmp_path_factory.mktemp("spfdns"), dnsmasq_lines(section)).start())
    for server in started.values():
        server.stop()


@requires_dnsmasq()
@pytest.mark.parametrize("section, name, case", [pytest.param(s, n, c, id=f"{s['description']}: {n}")
                                                 for s, n, c in (e2e_cases() if dnsmasq_path() else [])])
def test_rfc7208_suite_over_real_dns(section_servers, section, name, case):
    server = section_servers(section)
    resolver = dns.Resolver([("127.0.0.1", server.port)], timeout=1, budget=20)
    result = check_host(case["host"], case["mailfrom"], case["helo"], resolver_lookup(resolver))
    expected = case["result"] if isinstance(case["result"], list) else [case["result"]]
    assert result.result in expected, f"{result!r} (spec {case['spec']})"
    explanation = case.get("explanation")
    if explanation and explanation != "DEFAULT":
        assert result.explanation.lower() == explanation.lower()


def test_enough_of_the_suite_runs_end_to_end():
    assert dnsmasq_path() is None or len(list(e2e_cases())) >= 90


# The plugin -----------------------------------------------------------------------------
BODY = "From: a@example.org\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nSubject: hi\n\nHello."
RECORDS = [
    'txt-record=pass.test,"v=spf1 ip4:192.0.2.10 -all"',
    'txt-record=fail.test,"v=spf1 -all exp=why.fail.test"',
    'txt-record=why.fail.test,"%{i} may not send for %{d}, see http://fail.test/"',
    'txt-record=soft.test,"v=spf1 ~all"',
    'txt-record=neutral.test,"v=spf1 ?all"',
    'txt-record=broken.test,"v=spf1 ip4:192.0.2.300 -all"',
    'txt-record=includes-dead.test,"v=spf1 include:x.dead.test -all"',
    "host-record=helo.test,192.0.2.10",
    'txt-record=helo.test,"v=spf1 a -all"',
    'txt-record=none.test,"not spf"',
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from dns_server(tmp_path_factory, RECORDS)


@pytest.fixture(params=["sender_permitted_from", "spf"])
def smtp(request, server, tmp_path):
    h = Harness(tmp_path, plugins=["relay", request.param, "rcpt_ok"])
    h.name = request.param
    h.config("rcpthosts", "example.test")
    h.config("dns_servers", server.servers_line)
    h.config("dns_timeout", "0.3")
    return h


def send(h, sender, helo="client.example", **kw):
    return h.run(f"EHLO {helo}", f"MAIL FROM:<{sender}>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                 body=BODY, **kw)


def test_pass_adds_received_spf_and_authentication_results(smtp):
    r = send(smtp, "alice@pass.test")
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    header = r.queued[0].header
    assert header.names()[:2] == ["Received-SPF", "Authentication-Results"] or \
        header.names()[:2] == ["Authentication-Results", "Received-SPF"]
    assert header.get("Authentication-Results") == "mx.example.test; spf=pass smtp.mailfrom=pass.test"
    received_spf = " ".join(header.get("Received-SPF").split())
    assert received_spf.startswith("pass (mx.example.test: domain of alice@pass.test designates 192.0.2.10 as "
                                   "permitted sender) client-ip=192.0.2.10; envelope-from=\"alice@pass.test\"; "
                                   "helo=client.example; receiver=mx.example.test; identity=mailfrom; "
                                   'mechanism="ip4:192.0.2.10";')


@pytest.mark.parametrize("level, sender, code, text", [
    (1, "a@fail.test", 250, None),
    (2, "a@fail.test", 450, "4.7.23 SPF - forgery: 192.0.2.10 may not send for fail.test, see http://fail.test/"),
    (3, "a@fail.test", 550, "5.7.23 SPF - forgery: 192.0.2.10 may not send for fail.test, see http://fail.test/"),
    (3, "a@soft.test", 450, "4.7.23 SPF - fail: softfail for soft.test"),
    (4, "a@soft.test", 550, "5.7.23 SPF - fail: softfail for soft.test"),
    (4, "a@neutral.test", 250, None),
    (5, "a@neutral.test", 550, "5.7.23 SPF - neutral: neutral for neutral.test"),
    (5, "a@none.test", 250, None),
    (6, "a@none.test", 550, "5.7.23 SPF - none: none for none.test"),
    (3, "a@broken.test", 250, None),
    (4, "a@broken.test", 450, None),
    (6, "a@broken.test", 550, None),
    (1, "a@includes-dead.test", 250, None),
    (6, "a@includes-dead.test", 450, None),   # temperror: never 5xx
])
def test_reject_levels(smtp, level, sender, code, text):
    smtp.plugins = ["relay", f"{smtp.name} reject {level}", "rcpt_ok"]
    r = smtp.run("EHLO client.example", f"MAIL FROM:<{sender}>", "QUIT")
    assert r.replies[2].code == code
    if text:
        assert r.replies[2].text == text
    elif code >= 400:
        assert r.replies[2].text.startswith(f"{code // 100}.7.24 SPF - ")  # permerror / temperror


def test_null_sender_checks_the_helo_identity(smtp):
    smtp.plugins = ["relay", f"{smtp.name} reject 3", "rcpt_ok"]
    r = send(smtp, "", helo="helo.test")
    assert r.codes[2] == 250
    assert r.queued[0].header.get("Authentication-Results") == "mx.example.test; spf=pass smtp.helo=helo.test"
    assert send(smtp, "", helo="helo.test", remote_ip="192.0.2.11").codes[2] == 550


def test_spfbehavior_config_and_relay_clients(smtp):
    smtp.config("spfbehavior", "3")
    assert send(smtp, "a@fail.test").codes[2] == 550
    r = send(smtp, "a@fail.test", relay_client=True)
    assert r.codes[2] == 250 and r.queued[0].header.get("Received-SPF") is None


def test_sender_is_checked_with_the_real_binary(server, tmp_path):
    from conftest import SMTPConfig, dialogue

    cfg = SMTPConfig(tmp_path)
    cfg.write("dns_servers", server.servers_line)
    cfg.plugins("relay", "spf reject 3", "rcpt_ok", f"queue/maildir {cfg.maildir}")
    r = cfg.run(dialogue("EHLO c.example", "MAIL FROM:<a@fail.test>", "MAIL FROM:<a@pass.test>",
                         "RCPT TO:<bob@example.test>", "DATA", "QUIT", body=BODY.replace("\n", "\r\n")))
    assert r.codes == [220, 250, 550, 250, 250, 354, 250, 221]
    message = cfg.messages()[0]
    assert b"\nReceived-SPF: pass (mx.example.test: domain of a@pass.test designates 192.0.2.10" in message
