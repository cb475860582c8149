"""authresults.py: entries recorded by plugins, one field written, every value quoted by RFC 8601's rules."""

from __future__ import annotations

import pytest
from types import SimpleNamespace

import authres
from hypothesis import given, settings, strategies as st

from qpsmtpd_stdio.authresults import add_auth_result, add_authentication_results, quote, remove_forged
from qpsmtpd_stdio.headers import Headers, unstructured


@pytest.mark.parametrize("value, expected", [
    ("example.org", "example.org"),
    ("@example.org", "@example.org"),
    ("user+tag@example.org", "user+tag@example.org"),
    ("x\\;", '"x\\\\;"'),
    ('a"b', '"a\\"b"'),
    ("a;b", '"a;b"'),
    ("a (b)", '"a (b)"'),
    ("a\r\nb\x00c", "abc"),
    ("d\u00e9j\u00e0", "dj"),
    ("", '""'),
    ("a@b@c", '"a@b@c"'),
])
def test_quote(value, expected):
    assert quote(value) == expected


HOSTILE = ["x\\;", 'a"b', "a;b", "a (b", "b) c", "a\r\nX-Injected: 1", "nul\x00here", "d\u00e9j\u00e0 \u2028",
           "\\", '"', ";", "(", ")", ""]


def written(notes: dict) -> str:
    header = Headers()
    txn = SimpleNamespace(notes=notes, header=header)
    add_authentication_results(txn, SimpleNamespace(notes={}), SimpleNamespace(get_one=lambda name: None),
                               "mx.example.test")
    return header.as_bytes().decode("ascii")


def expected(value: str) -> str:
    return "".join(c for c in value[:255] if " " <= c <= "~")


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_value_in_any_place_cannot_change_the_field(value):
    notes: dict = {}
    add_auth_result(notes, "dkim", "fail", [("header.d", value), ("header.i", value), ("header.s", value)],
                    comment=value)
    add_auth_result(notes, "dmarc", "fail", [("header.from", "example.org")])
    field = written(notes)
    assert field.count("\r\n") == 2 and field.startswith("Authentication-Results: ")  # one field, then the end
    authserv, results = authres.parse(field[len("Authentication-Results: "):-4])
    assert authserv == "mx.example.test"
    assert [(r["method"], r["result"]) for r in results] == [("dkim", "fail"), ("dmarc", "fail")]
    assert results[0]["props"] == {"header.d": expected(value), "header.i": expected(value),
                                   "header.s": expected(value)}
    assert results[0]["comments"] == ([unstructured(value, 255)] if value else [])
    assert results[1]["props"] == {"header.from": "example.org"}


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from('\\";()@ \t\r\n\x00\x7fabc.=\u00e9\u2028'), max_size=30),
       st.text(alphabet=st.sampled_from('\\";()@ \r\nab\x00\u00e9'), max_size=30))
def test_any_value_reads_back_as_written(value, remark):
    notes: dict = {}
    add_auth_result(notes, "spf", "pass", [("smtp.mailfrom", value)], comment=remark)
    add_auth_result(notes, "iprev", "pass", [("policy.iprev", "192.0.2.1")])
    field = written(notes)
    _, results = authres.parse(field[len("Authentication-Results: "):-4])
    assert len(results) == 2 and results[1]["props"] == {"policy.iprev": "192.0.2.1"}
    assert results[0]["props"]["smtp.mailfrom"] == expected(value)
    assert results[0]["comments"] == ([unstructured(remark, 255)] if remark else [])


@pytest.mark.parametrize("word", ["dkim=fail", "a b", "", "x;y", "f\u00e9"])
def test_method_result_and_property_names_must_be_keywords(word):
    for args in ((word, "pass"), ("dkim", word), ("dkim", "pass", [(word or "", "v")])):
        with pytest.raises(ValueError):
            add_auth_result({}, *args)


def test_forged_results_below_our_received_are_removed():
    h = Headers.parse(b"Authentication-Results: mx.example.test; spf=pass\r\n"
                      b"Received: from x\r\n"
                      b"Authentication-Results: mx.example.test; dkim=pass header.d=forged.example\r\n"
                      b"Authentication-Results: other.example; dkim=fail\r\n"
                      b"Subject: s")
    assert remove_forged(h, "mx.example.test") == 1
    assert h.get_all("Authentication-Results") == ["mx.example.test; spf=pass", "other.example; dkim=fail"]
    assert remove_forged(h, "mx.example.test") == 0
