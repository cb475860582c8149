"""Authentication-Results (RFC 8601): plugins record entries, the core writes one field.

A plugin calls `add_auth_result(txn.notes, "spf=pass smtp.mailfrom=example.org")`
(or with the connection's notes, for results about the client); after
data_post, delivery.py calls `add_authentication_results()`, which writes one
field with every entry, so results found late in data_post (dkim, dmarc) are in it too.
"""

from __future__ import annotations


def add_auth_result(notes: dict, entry: str) -> None:
    """Record `entry` (`spf=pass smtp.mailfrom=example.org`) in connection or transaction notes, as qpsmtpd does.

    add_authentication_results() writes them as one field after data_post.
    """
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


def quote(value: str) -> str:
    """An RFC 8601 property value: a token as it is, else a quoted-string; controls dropped, bounded.

    Every value a plugin puts in an entry goes through here, so a hostile
    signature (`d=x\\;`) cannot leave a string open and hide the next verdict.
    """
    value = "".join(c for c in value[:255] if c.isprintable() and c.isascii())
    if value and value.count("@") <= 1 and all(c in _PLAIN for c in value.replace("@", "")):
        return value  # a token, or RFC 8601's [local-part] "@" domain form
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
