"""qpsmtpd_stdio/esmtp.py: EHLO keywords, MAIL/RCPT parameters and xtext, with plain values."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qpsmtpd_stdio.address import AddressError
from qpsmtpd_stdio.esmtp import (
    MAIL_PARAMETERS,
    RCPT_PARAMETERS,
    Limits,
    check_params,
    decode_xtext,
    ehlo_keywords,
    encode_xtext,
    is_xtext,
    parse_params,
)


def codes(table, params, esmtp=True, limits=Limits(1000, auth=True), taken=frozenset()):
    reply = check_params(table, params, esmtp, limits, taken)
    return None if reply is None else reply.code


def test_ehlo_keywords():
    assert ehlo_keywords(0, 0, 0, False) == ["PIPELINING", "8BITMIME", "SIZE", "ENHANCEDSTATUSCODES", "SMTPUTF8",
                                            "CHUNKING", "DSN"]
    words = ehlo_keywords(5000, 100, 0, True)
    assert "SIZE 5000" in words and "LIMITS RCPTMAX=100" in words
    assert words[-1] == "XCLIENT NAME ADDR PORT PROTO HELO LOGIN"
    assert "LIMITS RCPTMAX=7 MAILMAX=2" in ehlo_keywords(0, 7, 2, False)


@pytest.mark.parametrize("params,code", [
    ({}, None),
    ({"SIZE": "1000"}, None),
    ({"SIZE": "1001"}, 552),
    ({"SIZE": None}, 501),
    ({"SIZE": "\u00b2"}, 501),        # superscript two: isdigit() is true, int() refuses it
    ({"SIZE": "\u0663"}, 501),        # Arabic-Indic three: not an ASCII number
    ({"BODY": "8bitmime"}, None),
    ({"BODY": "BINARYMIME"}, 501),
    ({"SMTPUTF8": None}, None),
    ({"SMTPUTF8": "yes"}, 501),
    ({"RET": "HDRS", "ENVID": "abc+2Bdef"}, None),
    ({"RET": "ALL"}, 501),
    ({"ENVID": "bad=xtext"}, 501),
    ({"AUTH": "<>"}, None),
    ({"AUTH": "+zz"}, 501),
    ({"XFOO": "1"}, 555),
])
def test_mail_parameters(params, code):
    assert codes(MAIL_PARAMETERS, params) == code


def test_size_without_a_limit():
    assert codes(MAIL_PARAMETERS, {"SIZE": "99999999"}, limits=Limits(0)) is None


def test_auth_parameter_only_with_an_auth_plugin():
    assert codes(MAIL_PARAMETERS, {"AUTH": "<>"}, limits=Limits(0, auth=False)) == 555


def test_parameters_need_ehlo():
    assert check_params(MAIL_PARAMETERS, {"SIZE": "1"}, False, Limits()).text == "MAIL parameters need EHLO"
    assert check_params(RCPT_PARAMETERS, {"NOTIFY": "NEVER"}, False, Limits()).code == 555


@pytest.mark.parametrize("params,code", [
    ({"NOTIFY": "SUCCESS,DELAY"}, None), ({"NOTIFY": "NEVER,SUCCESS"}, 501), ({"ORCPT": "rfc822;a@b.example"}, None),
    ({"ORCPT": "rfc822"}, 501), ({"SIZE": "1"}, 555),
])
def test_rcpt_parameters(params, code):
    assert codes(RCPT_PARAMETERS, params) == code


def test_a_plugin_may_take_a_parameter():
    assert codes(MAIL_PARAMETERS, {"XFOO": "1"}, taken=frozenset({"XFOO"})) is None
    assert codes(RCPT_PARAMETERS, {"XBAR": None}, taken=frozenset({"XBAR"})) is None
    assert codes(RCPT_PARAMETERS, {"XBAR": None}, taken=frozenset({"XFOO"})) == 555


def test_parse_params():
    assert parse_params("size=10  SMTPUTF8") == {"SIZE": "10", "SMTPUTF8": None}
    for bad in ("SIZE=", "-X=1", "A=b=c", "SIZE=1 size=2", "X=\x01"):
        with pytest.raises(AddressError):
            parse_params(bad)


@pytest.mark.parametrize("text,ok", [("", True), ("abc", True), ("a+2Bb", True), ("a+2bb", False), ("a=b", False),
                                     ("a b", False), ("+4", False), ("caf\u00e9", False)])
def test_is_xtext(text, ok):
    assert is_xtext(text) is ok


def test_decode_xtext():
    assert decode_xtext("alice+2Bext@example.test") == "alice+ext@example.test"
    for bad in ("+0A", "a+2", "a=b"):  # a control, truncated, a bare =
        with pytest.raises(ValueError):
            decode_xtext(bad)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=40))
def test_encode_then_decode_is_identity(text):
    encoded = encode_xtext(text)
    assert is_xtext(encoded)
    if text.isprintable():
        assert decode_xtext(encoded) == text
