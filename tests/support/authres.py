"""A strict reader of Authentication-Results (RFC 8601 2.2) and of RFC 5322 comments, for the tests.

    authserv, results = parse("mx.example; dkim=fail (bad) header.d=\\"x\\\\\\\\;\\"; dmarc=none")
    results == [{"method": "dkim", "result": "fail", "comments": ["bad"], "props": {"header.d": "x\\\\;"}},
                {"method": "dmarc", "result": "none", "comments": [], "props": {}}]

Anything outside the grammar raises ValueError: a test that gets a result
back knows the field says exactly that, and nothing more.
"""

from __future__ import annotations

TSPECIALS = set('()<>@,;:\\"/[]?=')


def tokens(text: str) -> list[tuple[str, str]]:
    """("word"|"quoted"|"comment"|"special", text) with white space dropped; quoted-pairs undone."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c == "(":
            body, i = comment_at(text, i)
            out.append(("comment", body))
        elif c == '"':
            i += 1
            chars = []
            while True:
                if i >= n:
                    raise ValueError("quoted-string without its end")
                if text[i] == "\\":
                    if i + 1 >= n:
                        raise ValueError("quoted-pair at the end")
                    chars.append(text[i + 1])
                    i += 2
                elif text[i] == '"':
                    i += 1
                    break
                else:
                    chars.append(text[i])
                    i += 1
            out.append(("quoted", "".join(chars)))
        elif c in TSPECIALS:
            out.append(("special", c))
            i += 1
        elif " " < c <= "~":
            start = i
            while i < n and " " < text[i] <= "~" and text[i] not in TSPECIALS:
                i += 1
            out.append(("word", text[start:i]))
        else:
            raise ValueError(f"{c!r} cannot appear in the field")
    return out


def comment_at(text: str, i: int) -> tuple[str, int]:
    """The text of the comment that opens at text[i] (nested comments kept, quoted-pairs undone), and its end."""
    depth, chars, i = 0, [], i
    while True:
        if i >= len(text):
            raise ValueError("comment without its end")
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text):
                raise ValueError("quoted-pair at the end")
            chars.append(text[i + 1])
            i += 2
            continue
        if not (" " <= c <= "~" or c in "\t\r\n"):
            raise ValueError(f"{c!r} in a comment")
        if c == "(":
            depth += 1
            if depth > 1:
                chars.append(c)
        elif c == ")":
            depth -= 1
            if depth == 0:
                return "".join(chars), i + 1
            chars.append(c)
        else:
            chars.append(c)
        i += 1


def parse(value: str) -> tuple[str, list[dict]]:
    toks = [t for t in tokens(value)]
    pos = 0

    def take(*kinds):
        nonlocal pos
        while pos < len(toks) and toks[pos][0] == "comment":
            if results:
                results[-1]["comments"].append(toks[pos][1])
            pos += 1
        if pos >= len(toks) or toks[pos][0] not in kinds:
            raise ValueError(f"expected {kinds} at token {pos}: {toks[pos:pos + 3]}")
        pos += 1
        return toks[pos - 1][1]

    def at(kind, text=None):
        j = pos
        while j < len(toks) and toks[j][0] == "comment":
            j += 1
        return j < len(toks) and toks[j][0] == kind and (text is None or toks[j][1] == text)

    results: list[dict] = []
    authserv = take("word", "quoted")
    if at("word") and take("word").isdigit() is False:
        raise ValueError("authres-version must be a number")
    while at("special", ";"):
        take("special")
        if at("word", "none") and not results:
            take("word")
            break
        method = take("word")
        if take("special") != "=":
            raise ValueError("method without =")
        results.append({"method": method, "result": take("word"), "comments": [], "props": {}})
        while at("word"):
            name = take("word")
            if take("special") != "=":
                raise ValueError("property without =")
            if name != "reason" and ("." not in name or name.startswith(".") or name.endswith(".")):
                raise ValueError(f"not ptype.property: {name!r}")
            pvalue = ""
            if at("special", "@"):
                take("special")
                pvalue = "@" + take("word")
            else:
                pvalue = take("word", "quoted")
                if at("special", "@"):
                    take("special")
                    pvalue += "@" + take("word")
            results[-1]["props"][name] = pvalue
    while pos < len(toks) and toks[pos][0] == "comment":
        if results:
            results[-1]["comments"].append(toks[pos][1])
        pos += 1
    if pos != len(toks):
        raise ValueError(f"left over: {toks[pos:pos + 3]}")
    return authserv, results
