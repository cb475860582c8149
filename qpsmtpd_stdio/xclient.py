"""XCLIENT (Postfix): a trusted front end says who its client is, and the session starts over for that client.

Only peers listed in config `xclient_clients` (matched by netlist.py, as
relayclients is) are offered XCLIENT and may use it; as in Postfix, a
successful XCLIENT is answered by a new greeting (the connect hooks run again
for the new client).
"""

from .digits import number
from .esmtp import XCLIENT_ATTRIBUTES, decode_xtext
from .protocol import Command, Reply


def trusted(session) -> bool:
    """Is the peer a front end allowed XCLIENT? Decided once, from the address before any XCLIENT."""
    if session.xclient_trusted is None:
        from .netlist import NetList

        session.xclient_trusted = session.connection.remote_ip in NetList(session.config.get("xclient_clients"))
    return session.xclient_trusted


def command(session, arg: str) -> None:
    if not session.config.get("xclient_clients"):
        return session.unrecognized(Command("XCLIENT", arg))
    if not trusted(session):
        return session.protocol_error(Reply(550, "Error: insufficient authorization", "5.7.0"))
    try:
        values = parse(arg)
    except ValueError as exc:
        return session.protocol_error(Reply(501, f"Bad XCLIENT syntax: {exc}", "5.5.4"))
    conn = session.connection
    front = conn.remote_label
    session.reset_transaction()
    if "ADDR" in values:
        # The front end's port is not the client's; relaying is decided afresh, by the connect hooks.
        conn.set_client(values["ADDR"], 0)
    if "PORT" in values:
        conn.remote_port = values["PORT"]
    if "NAME" in values:
        conn.remote_host = values["NAME"]
    conn.hello, conn.hello_host, conn.esmtp = "", values.get("HELO", ""), values.get("PROTO") == "ESMTP"
    conn.capabilities = []
    if values.get("LOGIN"):
        conn.auth_user, conn.auth_mechanism = values["LOGIN"], "XCLIENT"
        conn.relay_client = True  # as after AUTH
    elif "LOGIN" in values:
        conn.auth_user = conn.auth_mechanism = None
    session.client_changed(f"XCLIENT from {front}" + (f" (login {values['LOGIN']})" if values.get("LOGIN") else ""))
    session.greet()
    if values.get("LOGIN"):
        conn.relay_client = True  # a connect hook may not take back what LOGIN gave


def parse(arg: str) -> dict:
    """XCLIENT's NAME=value pairs, xtext-decoded and checked; [UNAVAILABLE]/[TEMPUNAVAIL] give ""."""
    from .netlist import canonical_ip

    values: dict = {}
    words = arg.split()
    if not words:
        raise ValueError("no attributes")
    for word in words:
        name, eq, raw = word.partition("=")
        name = name.upper()
        if not eq or name not in XCLIENT_ATTRIBUTES:
            raise ValueError(f"bad attribute {name or word!r}")
        value = decode_xtext(raw)  # ValueError if malformed
        if value.upper() in ("[UNAVAILABLE]", "[TEMPUNAVAIL]"):
            value = ""
        if any(not c.isprintable() or c.isspace() for c in value):
            raise ValueError(f"bad {name} value")
        if name == "ADDR" and value:
            value = canonical_ip(value[5:] if value.upper().startswith("IPV6:") else value)
            if not value:
                raise ValueError("bad ADDR value")
        elif name == "PORT":
            port = number(value, 65535) if value else 0
            if port is None:
                raise ValueError("bad PORT value")
            value = port
        elif name == "PROTO":
            value = value.upper()
            if value not in ("", "SMTP", "ESMTP"):
                raise ValueError("bad PROTO value")
        values[name] = value
    return values
