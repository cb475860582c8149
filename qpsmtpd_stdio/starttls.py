"""STARTTLS (RFC 3207) and SMTPS (RFC 8314): when TLS starts, and what the session forgets when it does.

A plugin that sets `plugin.tls_context` (a callable returning an
ssl.SSLContext, called only when TLS starts) makes both work; tls.py does the
handshake over the raw fds. The session imports this module on the first
STARTTLS, or before the greeting when TLS may start at once.
"""

import time

from .constants import LOGERROR, LOGINFO
from .protocol import Command, Reply
from .transport import ClientGone, Timeout


def provider(session):
    """The `tls_context` callable of the plugin that provides TLS, or None (none does, or the transport cannot)."""
    if not hasattr(session.transport, "start_tls"):
        return None
    for plugin in session.host.plugins:
        make = getattr(plugin, "tls_context", None)
        if callable(make):
            return make
    return None


def context(session, make):
    """The plugin's SSLContext, or None (logged) if it cannot be made: a missing or unreadable certificate."""
    try:
        return make()
    except Exception as exc:
        session.log(LOGERROR, f"cannot start TLS: {exc}")
        return None


def implicit(session) -> bool:
    """SMTPS: by --smtps, config `smtps`, or (as qpsmtpd) a connection to port 465 with a TLS plugin loaded."""
    if session.smtps or session.config.get_flag("smtps"):
        return True
    return session.connection.local_port == 465 and provider(session) is not None


def handshake(session) -> None:
    """SMTPS: TLS before the greeting; without it the connection closes (a TLS client cannot read plaintext)."""
    make = provider(session)
    ctx = context(session, make) if make else None
    if ctx is None:
        if make is None:
            session.log(LOGERROR, "SMTPS: no plugin provides TLS (list `tls` in config/plugins); closing")
        session.close()
    session.proto.tls = True
    start(session, ctx)


def command(session, arg: str) -> None:
    make = provider(session)
    if make is None:
        return session.unrecognized(Command("STARTTLS", arg))
    if arg.strip():
        return session.protocol_error(Reply(501, "Syntax error (no parameters allowed)", "5.5.4"))
    ctx = context(session, make)
    if ctx is None:
        return session.respond(Reply(454, "TLS not available due to temporary reason", "4.7.0"))
    session.respond(Reply(220, "Ready to start TLS", "2.0.0"))  # the protocol drops what was pipelined after it
    start(session, ctx)


def start(session, ctx) -> None:
    """The handshake; then, as RFC 3207 4.2 asks, forget what the client said before it."""
    try:
        info = session.transport.start_tls(ctx, min(session.timeout, max(0.0, session.deadlines.next()[0] - time.monotonic())))
    except (Timeout, ClientGone) as exc:
        session.proto.close()  # nothing can be said in plaintext any more
        raise ClientGone(str(exc) or "TLS handshake timed out") from None
    conn = session.connection
    conn.tls = info
    conn.notes["tls_enabled"] = 1  # qpsmtpd's note
    session.reset_transaction()
    conn.hello = conn.hello_host = ""
    conn.esmtp = False
    conn.capabilities = []
    session.log(LOGINFO, f"TLS started: {info}")
