"""qpsmtpd_stdio/spf.py against the RFC 7208 test suite (openspf.org, tests/support/data/spf_rfc7208.json).

Each case runs check_host() with a lookup function that answers from the
case's zone data, so the evaluator is tested without a DNS server; the end
to end tests against dnsmasq are in tests/plugins/test_plugin_spf.py.
"""

import json
from pathlib import Path

import pytest

from qpsmtpd_stdio import dns
from qpsmtpd_stdio.spf import check_host

SUITE = json.loads((Path(__file__).resolve().parents[1] / "support" / "data" / "spf_rfc7208.json").read_text())


class Zone:
    """A dict-backed `lookup` for check_host, with the suite's conventions (see the JSON's `source`)."""

    def __init__(self, zonedata: dict) -> None:
        self.names: dict[str, list] = {}
        for name, entries in zonedata.items():
            records = self.names.setdefault(name.lower().rstrip("."), [])
            has_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
            for entry in entries:
                if entry == "TIMEOUT":
                    records.append(("TIMEOUT", None))
                    continue
                (rdtype, value), = entry.items()
                if rdtype == "SPF":
                    if has_txt:
                        continue  # type SPF (99) is not looked up under RFC 7208
                    rdtype = "TXT"
                if rdtype == "TXT" and value == "NONE":
                    continue
                if isinstance(value, list) and rdtype == "TXT":
                    value = "".join(value)
                elif rdtype == "MX":
                    value = (value[0], value[1].rstrip("."))
                elif rdtype == "PTR":
                    value = value.rstrip(".")
                records.append((rdtype, value))
        self.asked: list[tuple[str, str]] = []

    def __call__(self, questions):
        return [self.answer(name, rdtype) for name, rdtype in questions]

    def answer(self, name: str, rdtype: str) -> dns.Answer:
        self.asked.append((name, rdtype))
        entries = self.names.get(name.lower().rstrip("."))
        if entries is None:
            return dns.Answer(name, rdtype, "NXDOMAIN")
        found = [value for t, value in entries if t == rdtype]
        if not found and any(t == "TIMEOUT" for t, _ in entries):
            return dns.Answer(name, rdtype, "TIMEOUT")
        return dns.Answer(name, rdtype, "NOERROR", found)


CASES = [pytest.param(section, name, case, id=f"{section['description']}: {name}")
         for section in SUITE["sections"] for name, case in section["tests"].items()]


@pytest.mark.parametrize("section, name, case", CASES)
def test_rfc7208_suite(section, name, case):
    zone = Zone(section["zonedata"])
    result = check_host(case["host"], case["mailfrom"], case["helo"], zone, receiver="mx.example.test")
    expected = case["result"] if isinstance(case["result"], list) else [case["result"]]
    assert result.result in expected, f"{result!r} (spec {case['spec']})"
    explanation = case.get("explanation")
    if explanation and explanation != "DEFAULT":
        assert result.explanation.lower() == explanation.lower()


def test_suite_is_complete():
    """The transcription kept every section and case of the 2014.04 release."""
    assert len(SUITE["sections"]) == 16
    assert len(CASES) == 198
    assert sum(1 for _, _, case in (p.values for p in CASES) if case.get("explanation")) == 22


def test_lookups_are_counted_not_repeated_without_need():
    """mech-at-limit: exactly the 10 DNS-querying terms are evaluated, one TXT lookup for the record."""
    section = next(s for s in SUITE["sections"] if s["description"] == "Processing limits")
    zone = Zone(section["zonedata"])
    assert check_host("1.2.3.4", "foo@e6.example.com", "mail.example.com", zone).result == "pass"
    assert zone.asked[0] == ("e6.example.com", "TXT")
    assert sum(1 for _, t in zone.asked if t == "MX") == 4


def test_a_term_asks_all_its_hosts_in_one_batch():
    """mx: the A queries of every MX host are handed to lookup together, so a resolver sends them in parallel."""
    batches = []
    zone = Zone({"example.org": [{"TXT": "v=spf1 mx -all"}, {"MX": [10, "a.example.org"]},
                                 {"MX": [20, "b.example.org"]}],
                 "a.example.org": [{"A": "192.0.2.1"}], "b.example.org": [{"A": "192.0.2.2"}]})

    def lookup(questions):
        batches.append(list(questions))
        return zone(questions)

    assert check_host("192.0.2.2", "x@example.org", "h.example.org", lookup).result == "pass"
    assert [("a.example.org", "A"), ("b.example.org", "A")] in batches
