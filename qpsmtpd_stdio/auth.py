"""SMTP AUTH (RFC 4954): the SASL mechanisms PLAIN, LOGIN and CRAM-MD5, sans I/O, and the policy around them.

The session feeds an `Exchange` the AUTH command's initial response and each
line the client sends after a 334; it answers with the next challenge (a 334
Reply), an error Reply, or the `Credentials` that the `auth` hooks then
check. Passwords stay in Credentials and go nowhere else: not in a log line,
not in a repr.

Config files (read by `Policy`):
  tls_before_auth         1 (default): no AUTH until TLS is on (STARTTLS or SMTPS);
                          0: AUTH is offered in plaintext too
  disable_plaintext_auth  1 (default): PLAIN and LOGIN, which send the password
                          itself, only under TLS; 0: also without
  max_auth_failures       failed AUTH attempts a connection may make; the last
                          one is answered 421 and the connection closed (default 3; 0: no limit)
  auth_failure_delay      seconds before the reply to the first failure, doubled
                          for each further one (default 1)
  auth_failures_per_ip    failed AUTH attempts one client address may make, over
                          all its connections, within auth_failure_window
                          seconds; past it AUTH gets 421 (default 10; 0: no
                          limit). Counted in the shared store (store.py).
  auth_failure_window     seconds (default 3600)

The session imports this module only when an auth plugin is loaded.
"""

import binascii

from .protocol import Reply

MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")
PLAINTEXT = frozenset(("PLAIN", "LOGIN"))  # the password itself crosses the wire
MAX_NAME = 256  # octets of a user name

_CANCELED = Reply(501, "Authentication canceled", "5.0.0")
_UNDECODABLE = Reply(501, "Cannot decode response", "5.5.2")
_LOGIN_USER = "VXNlcm5hbWU6"      # base64 "Username:"
_LOGIN_PASSWORD = "UGFzc3dvcmQ6"  # base64 "Password:"


def hook_name(mechanism: str) -> str:
    """The mechanism's own hook: PLAIN -> auth_plain, CRAM-MD5 -> auth_cram_md5."""
    return "auth_" + mechanism.lower().replace("-", "_")


def available(has_hook) -> list[str]:
    """The mechanisms some plugin can check: all for a generic `auth` hook (as qpsmtpd), else one per auth_<mech> hook."""
    if has_hook("auth"):
        return list(MECHANISMS)
    return [m for m in MECHANISMS if has_hook(hook_name(m))]


class Policy:
    """When AUTH is offered, and what failing costs."""

    def __init__(self, config) -> None:
        self.tls_before_auth = config.get_flag("tls_before_auth")
        self.disable_plaintext_auth = config.get_flag("disable_plaintext_auth")
        self.max_failures = int(_number(config.get_one("max_auth_failures"), 3))
        self.failure_delay = _number(config.get_one("auth_failure_delay"), 1.0)
        self.ip_limit = config.get_int("auth_failures_per_ip")
        self.ip_window = config.get_int("auth_failure_window")

    def offered(self, mechanisms: list[str], tls: bool) -> list[str]:
        if tls:
            return mechanisms
        if self.tls_before_auth:
            return []
        return [m for m in mechanisms if not (self.disable_plaintext_auth and m in PLAINTEXT)]

    def delay(self, failures: int) -> float:
        """Seconds to wait before answering the `failures`-th failure: 1, 2, 4... times auth_failure_delay."""
        return self.failure_delay * 2 ** min(failures - 1, 10)


class Credentials:
    """What the client proved, as the `auth` hooks get it: (mechanism, user, password, hash, ticket)."""

    __slots__ = ("mechanism", "user", "password", "hash", "ticket")

    def __init__(self, mechanism: str, user: str, password: str | None = None,
                 hash: str | None = None, ticket: str | None = None) -> None:
        self.mechanism = mechanism
        self.user = user
        self.password = password  # PLAIN, LOGIN
        self.hash = hash          # CRAM-MD5: the client's hex HMAC-MD5 of `ticket`
        self.ticket = ticket      # CRAM-MD5: the challenge we sent

    def __repr__(self) -> str:
        return f"Credentials({self.mechanism!r}, {self.user!r}, ***)"

    def hook_args(self) -> tuple:
        """qpsmtpd's auth hook arguments after txn: (mech, user, passClear, passHash, ticket); mech lower-case."""
        return self.mechanism.lower(), self.user, self.password, self.hash, self.ticket


class Exchange:
    """The server side of one AUTH exchange. `start()` then `respond()` until the result is not a 334 Reply."""

    def __init__(self, mechanism: str, me: str) -> None:
        self.mechanism = mechanism
        self.me = me
        self._user: str | None = None
        self._ticket = ""

    def start(self, initial: str | None) -> Reply | Credentials:
        """`initial`: the initial response after the mechanism name, or None ("=" is an empty one)."""
        if initial is not None and self.mechanism == "CRAM-MD5":
            return Reply(501, "CRAM-MD5 takes no initial response", "5.5.4")
        if initial is None:
            if self.mechanism == "PLAIN":
                return Reply(334, "")
            if self.mechanism == "LOGIN":
                return Reply(334, _LOGIN_USER)
            self._ticket = new_ticket(self.me)
            return Reply(334, binascii.b2a_base64(self._ticket.encode(), newline=False).decode("ascii"))
        return self.respond(initial)

    def respond(self, line: str) -> Reply | Credentials:
        line = line.strip()
        if line == "*":
            return _CANCELED
        text = "" if line == "=" else decode_base64(line)  # "=": an empty initial response
        if text is None:
            return _UNDECODABLE
        if self.mechanism == "PLAIN":
            parts = text.split("\0")
            if len(parts) != 3 or not parts[1]:
                return Reply(501, "Invalid PLAIN response", "5.5.2")
            authzid, user, password = parts
            if authzid and authzid != user:
                return Reply(535, "Authorization identity must be the authentication identity", "5.7.8")
            return self._credentials(user, password=password)
        if self.mechanism == "LOGIN":
            if self._user is None:
                self._user = text
                return Reply(334, _LOGIN_PASSWORD)
            return self._credentials(self._user, password=text)
        user, _, digest = text.rpartition(" ")
        if len(digest) != 32 or not all(c in "0123456789abcdefABCDEF" for c in digest):
            return Reply(501, "Invalid CRAM-MD5 response", "5.5.2")
        return self._credentials(user, hash=digest.lower(), ticket=self._ticket)

    def _credentials(self, user: str, **secret) -> Reply | Credentials:
        # A NUL or line break would split checkpassword's input or a log line.
        if not user or len(user.encode("utf-8", "surrogateescape")) > MAX_NAME or not user.isprintable():
            return Reply(501, "Invalid user name", "5.5.2")
        if "\0" in (secret.get("password") or ""):
            return Reply(501, "Invalid password", "5.5.2")
        return Credentials(self.mechanism, user, **secret)


def new_ticket(me: str) -> str:
    """A CRAM-MD5 challenge (RFC 2195): unpredictable, and never the same twice."""
    import os
    import time

    return f"<{os.urandom(8).hex()}.{int(time.time())}@{me}>"


def decode_base64(text: str) -> str | None:
    """RFC 4648 base64 to text (UTF-8; undecodable octets kept as surrogates), or None if it is not base64."""
    try:
        raw = binascii.a2b_base64(text.encode("ascii"), strict_mode=True) if text else b""
    except (binascii.Error, UnicodeEncodeError):
        return None
    return raw.decode("utf-8", "surrogateescape")


def check_password(stored: str, password: str | None = None, hash: str | None = None, ticket: str | None = None) -> bool:
    """True if the client's password (PLAIN, LOGIN) or CRAM-MD5 hash of `ticket` matches the stored clear password.

    Comparisons take the same time whatever matches (no timing oracle).
    """
    import hmac

    secret = stored.encode("utf-8", "surrogateescape")
    if password is not None:
        return hmac.compare_digest(secret, password.encode("utf-8", "surrogateescape"))
    if hash is not None and ticket:
        expected = hmac.new(secret, ticket.encode("utf-8"), "md5").hexdigest()
        return hmac.compare_digest(expected, hash.lower())
    return False


def _number(value: str | None, default: float) -> float:
    try:
        return max(0.0, float(value.split()[0])) if value else default
    except (ValueError, IndexError):
        return default
