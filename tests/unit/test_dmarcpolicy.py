"""dmarcpolicy.py: DMARC's pure parts."""

from __future__ import annotations

import pytest

from qpsmtpd_stdio.dmarcpolicy import aligned, from_domains, org_domain, parse_record


@pytest.mark.parametrize("record, expected", [
    ("v=DMARC1; p=reject", {"p": "reject", "sp": "", "pct": 100, "adkim": "r", "aspf": "r"}),
    ("v=DMARC1; p=quarantine; sp=none; pct=20; adkim=s", {"p": "quarantine", "sp": "none", "pct": 20,
                                                          "adkim": "s", "aspf": "r"}),
    ("v=DMARC1; p=bogus; rua=mailto:x@example.org", {"p": "none", "sp": "", "pct": 100, "adkim": "r", "aspf": "r"}),
    ("v=DMARC1; p=reject; pct=\u00b2", {"p": "reject", "sp": "", "pct": 100, "adkim": "r", "aspf": "r"}),
    ("v=DMARC1; p=reject; pct=\u0663", {"p": "reject", "sp": "", "pct": 100, "adkim": "r", "aspf": "r"}),
    ("v=DMARC1; p=reject; pct=" + "9" * 5000, {"p": "reject", "sp": "", "pct": 100, "adkim": "r", "aspf": "r"}),
    ("v=DMARC1; p=reject; pct=250", {"p": "reject", "sp": "", "pct": 100, "adkim": "r", "aspf": "r"}),
])
def test_parse_record(record, expected):
    assert parse_record(record) == expected


def test_a_record_without_policy_is_none():
    assert parse_record("v=DMARC1; p=bogus") is None


def test_from_domains():
    assert from_domains('"Bob (b@evil.example)" <bob@Example.ORG> (c@x.example)') == ["example.org"]
    assert from_domains("a@one.example, b@two.example.") == ["one.example", "two.example"]
    assert from_domains("undisclosed-recipients:;") == []


def test_alignment_and_org_domain():
    assert org_domain("mail.example.co.uk") == "example.co.uk"
    assert aligned("mail.example.org", "example.org", "r")
    assert aligned("example.org", "mail.example.org", "r")
    assert not aligned("mail.example.org", "example.org", "s")
    assert not aligned("example.net", "example.org", "r")
    assert not aligned("a.example.co.uk", "b.co.uk", "r")  # co.uk is a public suffix
    assert aligned("a.example.co.uk", "example.co.uk", "r")
