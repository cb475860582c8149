"""atheris target: the MAIL/RCPT argument and path parser (qpsmtpd_stdio.address).

Invariants for any input: only AddressError is raised, and its reply code is
a 5xx; an accepted address has no control, line-break or non-printable
character in it (nothing can leak into an envelope or a header), keeps the
RFC 5321 length limits, and parses again to itself. Time per input is
bounded by libFuzzer's -timeout (a quadratic regex would show up there).

    python3 fuzz/fuzz_address.py -dict=fuzz/smtp.dict fuzz/corpus/address -runs=1000000

See fuzz/README.md.
"""

import re

from harness import fuzz, instrumented

with instrumented():
    from qpsmtpd_stdio.address import AddressError, parse_path, split_mail_arg
    from qpsmtpd_stdio.esmtp import parse_params


def check_address(addr, text: str, utf8: bool) -> None:
    whole = addr.address
    assert whole.isprintable(), (text, addr)
    assert not any(c in whole for c in "\r\n\x00\x85\u2028\u2029"), (text, addr)
    assert utf8 or whole.isascii(), (text, addr)
    assert len(addr.user.encode()) <= 64 or addr.user == "", (text, addr)
    assert len(whole.encode()) <= 256, (text, addr)
    again = parse_path(str(addr), allow_null=True, allow_utf8=utf8, allow_bare_postmaster=True)
    assert again == addr and again.user == addr.user, (text, addr, again)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    flags = data[0]
    text = data[1:].decode("utf-8", "surrogateescape")
    utf8 = bool(flags & 1)
    keyword = "FROM" if flags & 2 else "TO"
    try:
        path, rest = split_mail_arg(text, keyword)
        params = parse_params(rest) if rest.strip() else {}
        for key, value in params.items():
            assert re.fullmatch(r"[A-Z0-9][A-Z0-9-]*", key), key
            assert value is None or value.isprintable(), value
        addr = parse_path(path, allow_null=bool(flags & 4), allow_utf8=utf8, allow_bare_postmaster=bool(flags & 8))
    except AddressError as exc:
        assert 500 <= exc.code <= 599, exc
        return
    check_address(addr, text, utf8)


def main() -> None:
    fuzz(test_one_input)


if __name__ == "__main__":
    main()
