"""Tests for qpsmtpd_stdio.address (RFC 5321 path parsing)."""
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpsmtpd_stdio.address import (
    Address,
    AddressError,
    parse_path,
    split_mail_arg,
)
from qpsmtpd_stdio.esmtp import parse_params


def err(text: str, **kw) -> AddressError:
    with pytest.raises(AddressError) as info:
        parse_path(text, **kw)
    return info.value


def codes(e: AddressError) -> tuple[int, str]:
    return e.code, e.enhanced


# --- valid paths -------------------------------------------------------------

def test_simple():
    a = parse_path("<user@example.org>")
    assert (a.user, a.host) == ("user", "example.org")
    assert a.address == "user@example.org"
    assert str(a) == "<user@example.org>"
    assert repr(a) == "Address('user', 'example.org')"
    assert not a.is_null and a.is_ascii


@pytest.mark.parametrize("text", [
    "<a@b>", "<first.last@sub.example.org>", "<a+tag@x-y.example>",
    "<!#$%&'*+-/=?^_`{|}~@example.org>", "<user@192.0.2.1>", "<u@xn--bcher-kva.example>",
])
def test_valid(text):
    assert str(parse_path(text)) == text


def test_null_path():
    a = parse_path("<>", allow_null=True)
    assert a.is_null and a.address == "" and str(a) == "<>"
    assert (a.user, a.host) == ("", "")
    assert codes(err("<>")) == (501, "5.1.3")


@pytest.mark.parametrize("text", ["<postmaster>", "<PostMaster>"])
def test_bare_postmaster(text):
    a = parse_path(text, allow_bare_postmaster=True)
    assert (a.user, a.host, a.address, str(a)) == ("postmaster", "", "postmaster", "<postmaster>")
    assert not a.is_null
    assert codes(err(text)) == (501, "5.1.3")  # not allowed unless asked for


def test_postmaster_with_domain_is_normal():
    a = parse_path("<Postmaster@example.org>", allow_bare_postmaster=True)
    assert (a.user, a.host) == ("Postmaster", "example.org")


@pytest.mark.parametrize("text", [
    "<@a.example:user@c.example>",
    "<@a.example,@b.example:user@c.example>",
])
def test_source_route_dropped(text):
    assert parse_path(text) == Address("user", "c.example")


@pytest.mark.parametrize("text", [
    "<@a.example user@c.example>",   # no colon
    "<@a.example,b.example:u@c>",     # hop without @
    "<@:u@c>", "<@a..b:u@c>", "<@[192.0.2.1]:u@c>", "<@a:>", "<@a.example>",
])
def test_bad_source_route(text):
    assert codes(err(text)) == (501, "5.1.3")


@pytest.mark.parametrize("text, user", [
    ('<"john doe"@example.org>', '"john doe"'),
    ('<"user@ext"@local>', '"user@ext"'),
    ('<"a\\"b"@x>', '"a\\"b"'),
    ('<"a\\\\b"@x>', '"a\\\\b"'),
    ('<"a.\\ .b"@x>', '"a.\\ .b"'),
    ('<""@x>', '""'),
    ('<@r.example:"a:b"@x>', '"a:b"'),
])
def test_quoted_local(text, user):
    a = parse_path(text)
    assert a.user == user and a.host in ("example.org", "local", "x")


@pytest.mark.parametrize("text", [
    '<"abc@x>', '<"a"b@x>', '<"a"@x@y>', '<"a\\', '<"a\\>', '<"a"x>',
])
def test_bad_quoted_local(text):
    assert err(text).code == 501


# --- address literals ----------------------------------------------------------

@pytest.mark.parametrize("lit", [
    "[192.0.2.1]", "[0.0.0.0]", "[255.255.255.255]", "[010.0.0.1]",
    "[IPv6:2001:db8::1]", "[ipv6:::1]", "[IPv6:::ffff:192.0.2.1]",
    "[IPv6:2001:db8:0:0:0:0:0:1]",
])
def test_literal_valid(lit):
    assert parse_path(f"<u@{lit}>").host == lit


@pytest.mark.parametrize("lit", [
    "[256.0.0.1]", "[1.2.3]", "[1.2.3.4.5]", "[1.2.3.]", "[1..2.3]", "[0001.2.3.4]",
    "[IPv6:2001:db8::g]", "[IPv6:1:2:3:4:5:6:7:8:9]", "[IPv6:fe80::1%eth0]",
    "[IPv6:]", "[2001:db8::1]", "[x-tag:foo]", "[]", "[example.org]", "[1.2.3.4",
    "[1.2.3.4]x", "[[1.2.3.4]]", "[ 1.2.3.4]", "[1.2.3.-4]", "[+1.2.3.4]",
])
def test_literal_invalid(lit):
    assert codes(err(f"<u@{lit}>")) == (501, "5.1.3")


def test_literal_non_ascii_digits():
    assert codes(err("<u@[١.2.3.4]>", allow_utf8=True)) == (501, "5.1.3")


# --- control characters ------------------------------------------------------------

@pytest.mark.parametrize("ch", [chr(c) for c in range(0x20)] + ["\x7f"])
@pytest.mark.parametrize("where", [
    "<{}u@x>", "<u{}@x>", "<u@x{}>", "<u@{}x>", '<"a{}b"@x>', "{}<u@x>", "<u@x>{}",
])
def test_control_chars_rejected(ch, where):
    e = err(where.format(ch), allow_null=True, allow_utf8=True)
    assert codes(e) == (501, "5.5.2")
    assert e.text == "control characters are not allowed"


def test_control_chars_checked_first():
    # even in a too-long, unbracketed, non-ASCII input
    assert codes(err("ü" * 600 + "\r\n")) == (501, "5.5.2")


@pytest.mark.parametrize("ch", [
    "\x85", "\x80", "\x9f", "\u2028", "\u2029", "\xa0", "\u200b", "\ud800", "\ufeff",
])
def test_non_ascii_non_printable(ch):
    assert codes(err(f"<u{ch}@x>")) == (553, "5.6.7")  # non-ASCII first
    assert codes(err(f"<u{ch}@x>", allow_utf8=True)) == (501, "5.5.2")


# --- open relay tricks ------------------------------------------------------------------

@pytest.mark.parametrize("text, user, host", [
    ("<user%ext@local>", "user%ext", "local"),
    ("<ext!user@local>", "ext!user", "local"),
    ("<@local:user@ext>", "user", "ext"),
    ('<"user@ext"@local>', '"user@ext"', "local"),
    ("<user%ext.example@[192.0.2.1]>", "user%ext.example", "[192.0.2.1]"),
])
def test_relay_tricks_parse_as_rfc_says(text, user, host):
    a = parse_path(text)
    assert (a.user, a.host) == (user, host)


@pytest.mark.parametrize("text", [
    "<user@ext@local>", "<user@local.>", "<user@local..>", "<user@.local>", "<user@>",
    "<@local>", "<user>", "<user@ext,@local>", "<user@ext:local>", "<user@-local>",
    "<user@local->", "<user@lo_cal>", "<user@lo cal>", "<.user@x>", "<user.@x>",
    "<us..er@x>", "<us(er)@x>", "<us,er@x>", "<us[er@x>", "<us\\er@x>", "<us er@x>",
    "<us\"er@x>", "<@x>",
])
def test_syntax_errors(text):
    assert codes(err(text)) == (501, "5.1.3")


def test_double_at_message():
    assert "more than one @" in err("<user@ext@local>").text
    assert "trailing dot" in err("<user@local.>").text


@pytest.mark.parametrize("text", [
    "user@example.org", "<user@example.org", "user@example.org>", "<", ">", "", "<<a@b>>",
    " <a@b>", "<a@b> ",
])
def test_angle_brackets_required(text):
    e = err(text, allow_null=True)
    assert e.code == 501
    if not text.startswith("<<"):
        assert (e.enhanced, e.text) == ("5.5.4", "Syntax error in address: angle brackets required")


@pytest.mark.parametrize("text", ["< a@b>", "<a@b >", "< >"])
def test_whitespace_inside_brackets(text):
    e = err(text, allow_null=True)
    assert codes(e) == (501, "5.1.3") and "whitespace" in e.text


# --- length limits ------------------------------------------------------------------

def test_local_part_64():
    assert parse_path(f"<{'a' * 64}@x>").user == "a" * 64
    assert codes(err(f"<{'a' * 65}@x>")) == (553, "5.1.3")
    assert parse_path(f'<"{"a" * 62}"@x>')
    assert codes(err(f'<"{"a" * 63}"@x>')) == (553, "5.1.3")


def test_label_63():
    assert parse_path(f"<u@{'a' * 63}.org>")
    e = err(f"<u@{'a' * 64}.org>")
    assert codes(e) == (553, "5.1.3") and "label" in e.text


def domain_of(octets: int) -> str:
    """A valid-looking domain of exactly `octets` octets."""
    labels, left = [], octets
    while left > 63:
        labels.append("a" * 62)
        left -= 63  # label + dot
    return ".".join(labels + ["b" * left])


def test_domain_255():
    assert len(domain_of(255)) == 255 and len(domain_of(256)) == 256
    e = err(f"<u@{domain_of(256)}>")
    assert codes(e) == (553, "5.1.3") and "domain too long" in e.text
    # a 255-octet domain is fine as a domain, but u@ + 255 breaks the 256 address cap
    e = err(f"<u@{domain_of(255)}>")
    assert codes(e) == (553, "5.1.3") and "address too long" in e.text


def test_address_256():
    ok = f"<{'a' * 64}@{domain_of(191)}>"
    assert len(parse_path(ok).address) == 256
    e = err(f"<{'a' * 64}@{domain_of(192)}>")
    assert codes(e) == (553, "5.1.3") and "address" in e.text


def test_lengths_count_utf8_octets():
    assert parse_path(f"<{'ü' * 32}@x>", allow_utf8=True)  # 64 octets
    assert codes(err(f"<{'ü' * 32}a@x>", allow_utf8=True)) == (553, "5.1.3")
    assert parse_path(f"<u@{'ü' * 31}a.x>", allow_utf8=True)  # 63-octet label
    assert codes(err(f"<u@{'ü' * 32}.x>", allow_utf8=True)) == (553, "5.1.3")


def test_source_route_does_not_count_toward_address_length():
    route = ",".join(f"@{'r' * 60}.example" for _ in range(3))
    assert parse_path(f"<{route}:u@x>") == Address("u", "x")


def test_raw_input_cap():
    assert codes(err("<" + "a" * 511 + ">")) == (553, "5.1.3")
    assert codes(err("<" + "@r," * 200 + "@r:u@x>")) == (553, "5.1.3")


@pytest.mark.parametrize("hostile", [
    "<a@" + "a-" * 32000 + "a!>",
    "<" + "a." * 32000 + "!@x>",
    "<" + '"' + "\\a" * 32000 + ">",
    "<" + "@a," * 20000 + ">",
    "<a@" + "a-" * 250 + "a!>",  # under the raw cap: must still be linear
    "<" + "a." * 120 + "a!@x>",
    "<a@[IPv6:" + "1:" * 250 + ">",
])
def test_hostile_input_is_fast(hostile):
    start = time.perf_counter()
    for _ in range(10):
        with pytest.raises(AddressError):
            parse_path(hostile)
    assert time.perf_counter() - start < 1.0  # generous: ~1 ms expected


# --- UTF-8 ------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "<jürgen@example.org>", "<user@bücher.example>", "<用户@例子.广告>", '<"ü x"@x>',
    "<δοκιμή@παράδειγμα.δοκιμή>",
])
def test_utf8(text):
    e = err(text)
    assert codes(e) == (553, "5.6.7") and e.text == "non-ASCII address requires SMTPUTF8"
    a = parse_path(text, allow_utf8=True)
    assert str(a) == text and not a.is_ascii


def test_utf8_not_in_quoted_pair():
    assert codes(err('<"\\ü"@x>', allow_utf8=True)) == (501, "5.1.3")


def test_utf8_still_needs_valid_structure():
    for text in ["<ü@ü.>", "<ü@ü@ü>", "<ü..ü@x>", "<ü@-ü>"]:
        assert err(text, allow_utf8=True).code == 501


# --- Address value object ----------------------------------------------------------

def test_equality_case_insensitive_on_host_only():
    assert parse_path("<User@Example.ORG>") == parse_path("<User@example.org>")
    assert parse_path("<User@example.org>") != parse_path("<user@example.org>")
    assert hash(Address("u", "EXAMPLE.org")) == hash(Address("u", "example.ORG"))
    assert len({Address("u", "A"), Address("u", "a"), Address("U", "a")}) == 2
    assert Address("u", "x") != "u@x"
    assert parse_path("<u@Ü.example>", allow_utf8=True) == Address("u", "ü.example")


def test_host_kept_as_received():
    assert parse_path("<u@Example.ORG>").host == "Example.ORG"


def test_immutable():
    a = Address("u", "x")
    with pytest.raises(AttributeError):
        a.user = "v"


def test_error_is_value_error():
    e = err("bad")
    assert isinstance(e, ValueError)
    assert str(e) == f"{e.code} {e.enhanced} {e.text}"


@pytest.mark.parametrize("text, expected", [
    ("user@example.org", Address("user", "example.org")),
    ("<user@example.org>", Address("user", "example.org")),
    ("  <u@x>  ", Address("u", "x")),
    ("", Address("", "")),
    ("<>", Address("", "")),
    ("postmaster", Address("postmaster", "")),
    ("jürgen@bücher.example", Address("jürgen", "bücher.example")),
])
def test_address_parse(text, expected):
    assert Address.parse(text) == expected


@pytest.mark.parametrize("text", ["u@x\n", "u@x.", "<u@x", "u@x>", "u@@x"])
def test_address_parse_errors(text):
    with pytest.raises(AddressError):
        Address.parse(text)


# --- split_mail_arg -------------------------------------------------------------

@pytest.mark.parametrize("arg, keyword, expected", [
    ("FROM:<a@b>", "FROM", ("<a@b>", "")),
    ("from:<a@b>", "FROM", ("<a@b>", "")),
    ("From: <a@b>", "FROM", ("<a@b>", "")),
    ("FROM:   <a@b>", "from", ("<a@b>", "")),
    (" FROM:<a@b>", "FROM", ("<a@b>", "")),
    ("FROM:<a@b> SIZE=1 BODY=8BITMIME", "FROM", ("<a@b>", "SIZE=1 BODY=8BITMIME")),
    ("FROM:<a@b>  SIZE=1  ", "FROM", ("<a@b>", "SIZE=1")),
    ("FROM:<> SIZE=1", "FROM", ("<>", "SIZE=1")),
    ('FROM:<"a b"@c> SIZE=1', "FROM", ('<"a b"@c>', "SIZE=1")),
    ('FROM:<"a\\" b"@c> X', "FROM", ('<"a\\" b"@c>', "X")),
    ('FROM:<"a>b c"@d> X', "FROM", ('<"a>b c"@d>', "X")),
    ("FROM:<a b@c> X", "FROM", ("<a b@c>", "X")),  # parse_path then rejects it
    ('FROM:"a b"@c X', "FROM", ('"a b"@c', "X")),
    ("FROM:a@b SIZE=1", "FROM", ("a@b", "SIZE=1")),
    ("TO:<a@b> NOTIFY=NEVER", "TO", ("<a@b>", "NOTIFY=NEVER")),
    ("to:<postmaster>", "TO", ("<postmaster>", "")),
    ("FROM:<a@b", "FROM", ("<a@b", "")),
])
def test_split_mail_arg(arg, keyword, expected):
    assert split_mail_arg(arg, keyword) == expected


@pytest.mark.parametrize("arg, keyword, text", [
    ("FROM<a@b>", "FROM", "Syntax: MAIL FROM:<address>"),
    ("FROM <a@b>", "FROM", "Syntax: MAIL FROM:<address>"),
    ("TO:<a@b>", "FROM", "Syntax: MAIL FROM:<address>"),
    ("FROM:<a@b>", "TO", "Syntax: RCPT TO:<address>"),
    ("", "FROM", "Syntax: MAIL FROM:<address>"),
    ("FROM:", "FROM", "Syntax: MAIL FROM:<address>"),
    ("FROM:   ", "FROM", "Syntax: MAIL FROM:<address>"),
    ("FROMAGE:<a@b>", "FROM", "Syntax: MAIL FROM:<address>"),
    ("<a@b>", "TO", "Syntax: RCPT TO:<address>"),
])
def test_split_mail_arg_errors(arg, keyword, text):
    with pytest.raises(AddressError) as info:
        split_mail_arg(arg, keyword)
    assert (info.value.code, info.value.enhanced, info.value.text) == (501, "5.5.4", text)


def test_split_then_parse():
    path, params = split_mail_arg("FROM: <user@example.org> SIZE=100 SMTPUTF8", "FROM")
    assert parse_path(path) == Address("user", "example.org")
    assert parse_params(params) == {"SIZE": "100", "SMTPUTF8": None}


# --- parse_params ----------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("", {}),
    ("   ", {}),
    ("SIZE=100 BODY=8BITMIME SMTPUTF8", {"SIZE": "100", "BODY": "8BITMIME", "SMTPUTF8": None}),
    ("size=100", {"SIZE": "100"}),
    ("X-FOO=a+b/c", {"X-FOO": "a+b/c"}),
    ("1X=!~", {"1X": "!~"}),
    ("ENVID=QQ314159", {"ENVID": "QQ314159"}),
    ("ORCPT=rfc822;u@x  NOTIFY=SUCCESS,FAILURE",
     {"ORCPT": "rfc822;u@x", "NOTIFY": "SUCCESS,FAILURE"}),
    ("X=jürgen", {"X": "jürgen"}),
])
def test_parse_params(text, expected):
    assert parse_params(text) == expected


@pytest.mark.parametrize("text", [
    "SIZE=1 SIZE=2", "SIZE=1 size=2", "SMTPUTF8 smtputf8",   # duplicates
    "-X=1", "X_Y=1", "X.Y", "=1", "SÏZE=1", "X:Y=1",       # bad keywords
    "SIZE=", "SIZE= BODY=7BIT",                              # empty value
    "A=b=c", "A=\x01", "A=\t1", "A\t=1", "A=\x7f", "A=\x85", "A=\xa0", "A=\ud800",
])
def test_parse_params_errors(text):
    with pytest.raises(AddressError) as info:
        parse_params(text)
    assert (info.value.code, info.value.enhanced, info.value.text) == (
        501, "5.5.4", "Syntax error in parameters")


# --- properties -----------------------------------------------------------------

@settings(max_examples=500)
@given(st.text(), st.booleans(), st.booleans(), st.booleans())
def test_parse_path_only_raises_address_error(text, null, utf8, pm):
    for candidate in (text, f"<{text}>"):
        try:
            a = parse_path(candidate, allow_null=null, allow_utf8=utf8, allow_bare_postmaster=pm)
        except AddressError as e:
            assert e.code in (501, 553) and e.text
        else:
            assert isinstance(a, Address)
            assert len(a.address.encode()) <= 256


_PATHISH = st.lists(st.sampled_from(list('ab.@"\\<>[]:,-_ ü%!1') + ["IPv6:", "::"])).map("".join)


@settings(max_examples=500)
@given(_PATHISH.map(lambda s: f"<{s}>"))
def test_parse_path_pathlike_only_raises_address_error(text):
    try:
        parse_path(text, allow_null=True, allow_utf8=True, allow_bare_postmaster=True)
    except AddressError:
        pass


@given(st.text(), st.sampled_from(["FROM", "TO"]))
def test_split_and_params_only_raise_address_error(text, keyword):
    for fn in (lambda: split_mail_arg(text, keyword),
               lambda: split_mail_arg(f"{keyword}:{text}", keyword),
               lambda: parse_params(text)):
        try:
            fn()
        except AddressError:
            pass


_ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
_atom = st.text(alphabet=_ATEXT, min_size=1, max_size=10)
_dot_string = st.lists(_atom, min_size=1, max_size=4).map(".".join)
_label = st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?\Z")
_domain = st.lists(_label, min_size=1, max_size=4).map(".".join)


@given(_dot_string, _domain)
def test_round_trip(local, domain):
    a = parse_path(f"<{local}@{domain}>")
    assert (a.user, a.host) == (local, domain)
    assert parse_path(str(a)) == a
    assert Address.parse(a.address) == a


@given(_dot_string, _domain)
def test_host_case_does_not_matter(local, domain):
    assert parse_path(f"<{local}@{domain.upper()}>") == parse_path(f"<{local}@{domain.lower()}>")
