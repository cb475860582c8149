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
