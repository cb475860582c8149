"""The AUTH command (RFC 4954) in a session: offering mechanisms, the SASL exchange, and what failing costs.

auth.py holds the mechanisms (sans I/O) and the policy; this module asks the
auth hooks and answers the client. The session imports it only when an auth
plugin is loaded.
"""

import time

from . import auth
from .constants import DECLINED, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT, LOGINFO, LOGNOTICE, OK
from .protocol import Command, Reply


class AuthState:
    """What one session's AUTH needs to remember."""

    __slots__ = ("policy", "exchange", "failures")

    def __init__(self, config) -> None:
        self.policy = auth.Policy(config)
        self.exchange: auth.Exchange | None = None  # the SASL exchange under way
        self.failures = 0


def state(session) -> AuthState:
    if session.auth is None:
        session.auth = AuthState(session.config)
    return session.auth


def encrypted(session) -> bool:
    """TLS here (STARTTLS, SMTPS), or at a trusted proxy that says so (PROXY v2's SSL TLV: HAProxy, stunnel)."""
    conn = session.connection
    return bool(conn.tls) or bool(conn.notes.get("proxy_tls"))


def mechanisms(session) -> list[str]:
    """The mechanisms EHLO advertises now (none: no AUTH line)."""
    return state(session).policy.offered(auth.available(session.host.has), encrypted(session))


def command(session, arg: str) -> None:
    if not session.auth_loaded():
        return session.unrecognized(Command("AUTH", arg))
    conn = session.connection
    policy = state(session).policy
    if not conn.esmtp:
        return session.protocol_error(Reply(503, "AUTH not defined for HELO", "5.5.1"))
    if not encrypted(session) and policy.tls_before_auth:
        from .starttls import provider

        if provider(session) is not None:
            return session.protocol_error(Reply(530, "Must issue a STARTTLS command first", "5.7.0"))
        # No STARTTLS here to ask for (no tls plugin; TLS ends at a proxy that does not say so).
        return session.protocol_error(Reply(538, "Encryption required for requested authentication mechanism",
                                            "5.7.11"))
    if too_many_failures(session):
        session.log(LOGNOTICE, f"AUTH from [{conn.remote_ip}] refused: {policy.ip_limit} failures from it within "
                               f"{policy.ip_window:g}s")
        return session.respond(Reply(421, f"{session.me} Too many authentication failures from your address", "4.7.0"))
    mechanism, _, initial = arg.strip().partition(" ")
    mechanism = mechanism.upper()
    known = auth.available(session.host.has)
    if mechanism not in known:
        return session.protocol_error(Reply(504, "Unrecognized authentication type", "5.5.4"))
    if mechanism not in policy.offered(known, encrypted(session)):
        return session.protocol_error(Reply(538, "Encryption required for requested authentication mechanism", "5.7.11"))
    session.auth.exchange = auth.Exchange(mechanism, session.me)
    step(session, session.auth.exchange.start(initial.strip() or None))


def response(session, line: str) -> None:
    """A line of the SASL exchange (after a 334)."""
    step(session, session.auth.exchange.respond(line))


def step(session, outcome) -> None:
    """Send the next challenge, an error, or check the credentials the exchange produced."""
    if isinstance(outcome, Reply) and outcome.code == 334:
        return session.respond(outcome)
    mechanism = session.auth.exchange.mechanism
    session.auth.exchange = None
    if not isinstance(outcome, Reply):
        return authenticate(session, outcome)
    if outcome.code == 535:
        return failed(session, mechanism, "", outcome.text)
    session.protocol_error(outcome)


def authenticate(session, credentials) -> None:
    """Ask the auth_<mech> hooks, then the auth hooks (qpsmtpd's order); OK is the only yes."""
    args = credentials.hook_args()
    result = session.host.run(auth.hook_name(credentials.mechanism), session.txn, *args)
    if result.code == DECLINED:
        result = session.host.run("auth", session.txn, *args)
    mechanism, user = credentials.mechanism, credentials.user
    if result.code == OK:
        return succeeded(session, mechanism, user)
    if result.code == DENYSOFT:
        return session.protocol_error(Reply(454, "Temporary authentication failure", "4.7.0"))
    if result.code == DENYSOFT_DISCONNECT:
        return session.respond(Reply(421, "Temporary authentication failure", "4.7.0"))
    reason = f"{result.plugin}: {result.text}" if result.plugin and result.text else "no plugin accepted it"
    failed(session, mechanism, user, reason, disconnect=result.code == DENY_DISCONNECT)


def succeeded(session, mechanism: str, user: str) -> None:
    conn = session.connection
    conn.auth_user, conn.auth_mechanism = user, mechanism
    conn.relay_client = True  # as qpsmtpd: an authenticated client may relay
    from .authresults import add_auth_result

    add_auth_result(conn.notes, "auth", "pass", [("smtp.auth", user)])
    session.log(LOGINFO, f"AUTH {mechanism} succeeded for {user!r}")
    session.respond(Reply(235, f"{mechanism} authentication successful for {user}", "2.7.0"))


def failed(session, mechanism: str, user: str, reason: str, disconnect: bool = False) -> None:
    """535 after a delay that doubles with each failure; the last failure allowed gets 421 and the end."""
    st = state(session)
    st.failures += 1
    count, limit = st.failures, st.policy.max_failures
    # The client's address comes before anything the client chose, so fail2ban's filter cannot be fooled.
    session.log(LOGNOTICE, f"AUTH {mechanism} failed from [{session.connection.remote_ip}] for {user!r} ({reason}); "
                           f"failure {count}" + (f" of {limit}" if limit else ""))
    count_failure(session)
    delay = min(st.policy.delay(count), max(0.0, session.deadlines.next()[0] - time.monotonic()))
    if delay > 0:
        session.log(LOGINFO, f"delaying the reply by {delay:g}s")
        time.sleep(delay)
    if limit and count >= limit:
        session.log(LOGNOTICE, f"{count} failed AUTH attempts; disconnecting")
        session.respond(Reply(421, f"{session.me} Too many authentication failures", "4.7.0"))
    session.respond(Reply(535, f"{mechanism} authentication failed" + (f" for {user}" if user else ""), "5.7.8"))
    if disconnect:
        session.close()


# Failures across connections, per client address, in the shared store (store.py) --------------------------
class _StoreOwner:
    """What store.open_store asks of its caller (a plugin, elsewhere): config, config_dir, log."""

    def __init__(self, session) -> None:
        self.config = session.config.get
        self.config_dir = lambda: session.config.directory
        self.log = session.log


def _failures(session, action):
    """action(db) on the auth_failures table; None if the store cannot be used (then nothing is refused)."""
    from .store import with_store

    if not state(session).policy.ip_limit or not session.connection.remote_ip:
        return None
    return with_store(_StoreOwner(session), ("auth_failures",), action, "AUTH failures not counted")


def too_many_failures(session) -> bool:
    """Has this address failed auth_failures_per_ip times within auth_failure_window seconds?"""
    policy, now = state(session).policy, time.time()
    row = _failures(session, lambda db: db.get("auth_failures", session.connection.remote_ip, ("failures", "first")))
    return bool(row) and now - row[1] < policy.ip_window and row[0] >= policy.ip_limit


def count_failure(session) -> None:
    policy, now = state(session).policy, time.time()

    def change(row):
        failures, first = (int(row[0]) + 1, row[1]) if row and now - row[1] < policy.ip_window else (1, now)
        return (failures, first), first + policy.ip_window, None

    _failures(session, lambda db: db.update("auth_failures", session.connection.remote_ip, ("failures", "first"),
                                            change))

