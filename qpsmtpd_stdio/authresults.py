"""Authentication-Results (RFC 8601): plugins record entries, the core writes one field.

A plugin records a verdict, never text:

    add_auth_result(txn.notes, "spf", "pass", [("smtp.mailfrom", domain)])
    add_auth_result(conn.notes, "iprev", "pass", [("policy.iprev", ip)], comment=name)

(transaction notes, or the connection's for results about the client). The
method, result and property names are keywords the plugin chooses; every
value is quoted here (`quote`) and the comment made an RFC 5322 comment, so
nothing a client, a DNS answer or a filter says can change the field. After
data_post, delivery.py calls `add_authentication_results()`, which writes one
field with every entry, so results found late in data_post (dkim, dmarc) are in it too.
"""

from .headers import comment as as_comment

_KEYWORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")


def add_auth_result(notes: dict, method: str, result: str, properties=(), comment: str = "") -> None:
    """Record `method=result (comment) ptype.property=value ...` in `notes` (RFC 8601 2.2).

    `properties` is a list of (ptype.property, value); a value of None is left out.
    Raises ValueError if method, result or a property name is not a keyword:
    that is the plugin's own text, and a mistake in it must not reach a header.
    """
    for word in (method, result, *(name for name, _ in properties)):
        if not word or not set(word) <= _KEYWORD:
            raise ValueError(f"not an Authentication-Results keyword: {word!r}")
    parts = [f"{method}={result}"] + ([as_comment(comment)] if comment else [])
    parts += [f"{name}={quote(value)}" for name, value in properties if value is not None]
    entry = " ".join(parts)
    found = notes.get("authentication_results")
    notes["authentication_results"] = f"{found}; {entry}" if found else entry


def add_authentication_results(txn, connection, config, me: str) -> None:
    """One `Authentication-Results: ME; auth=pass ...; spf=...; dkim=...` field (RFC 8601), after data_post.

    Plugins only record entries (in the connection's or the transaction's notes,
    `authentication_results`); the core writes the one field, so results found
    late in data_post (dkim, dmarc) are in it too.
    """
    entries = [e for e in (connection.notes.get("authentication_results"), txn.notes.get("authentication_results")) if e]
    if not entries:
        return
    authserv = config.get_one("me-auth-results") or me
    if authserv.lower() == "none":
        return
    txn.header.add("Authentication-Results", f"{authserv}; " + "; ".join(entries), prepend=True)


_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._+")
_LDH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def quote(value: str) -> str:
    """An RFC 8601 property value: a token or `[local-part] "@" domain` as it is, else a quoted-string; bounded.

    Controls and non-ASCII are dropped. Every value a plugin records goes
    through here, so a hostile signature (`d=x\\;`) cannot leave a string
    open and hide the next verdict.
    """
    value = "".join(c for c in value[:255] if " " <= c <= "~")
    local, at, domain = value.rpartition("@")
    if not at and value and set(value) <= _PLAIN:
        return value  # a token
    if at and _dot_atom(local, _PLAIN, empty=True) and "." in domain and _dot_atom(domain, _LDH):
        return value  # [local-part] "@" domain
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_atom(text: str, chars: frozenset, empty: bool = False) -> bool:
    if not text:
        return empty
    return all(part and set(part) <= chars for part in text.split("."))


def remove_forged(header, authserv: str) -> int:
    """Drop inbound Authentication-Results fields that claim to be ours (RFC 8601 5); the number dropped.

    Ours, written in this session, sit above the first Received field; any
    below it with our authserv-id came from outside.
    """
    fields = list(header)
    top = next((i for i, (name, _) in enumerate(fields) if name.lower() == "received"), len(fields))
    results = [(i, value) for i, (name, value) in enumerate(fields) if name.lower() == "authentication-results"]
    forged = [i for i, value in results if i > top and value.split(";")[0].strip().split(" ")[0].lower() == authserv]
    if forged:
        header.delete("Authentication-Results")
        for _, value in reversed([r for r in results if r[0] < top]):
            header.add("Authentication-Results", value, prepend=True)
        for i, value in results:
            if i > top and i not in forged:
                header.add("Authentication-Results", value)
    return len(forged)
