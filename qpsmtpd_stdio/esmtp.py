"""ESMTP: the EHLO keywords, the MAIL/RCPT parameters and their checks, and xtext (RFC 3461 4).

Adding a parameter is one entry in MAIL_PARAMETERS or RCPT_PARAMETERS: a
function from (value, Limits) to an error Reply or None. A plugin may take a
parameter the core does not know by listing it in `plugin.mail_parameters` or
`plugin.rcpt_parameters` (upper case) in its register(); the core then passes
it to the hooks in `params` instead of answering 555.
"""

from .address import AddressError, split_mail_arg
from .constants import DECLINED, OK
from .digits import number
from .protocol import Reply

XCLIENT_ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN")
_HEX_UPPER = frozenset("0123456789ABCDEF")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_KEYWORD_CHARS = _ALNUM | {"-"}


class Limits:
    """What the parameter checks need to know about this session."""

    __slots__ = ("databytes", "auth")

    def __init__(self, databytes: int = 0, auth: bool = False) -> None:
        self.databytes = databytes  # 0: no limit
        self.auth = auth            # an auth plugin is loaded: MAIL takes AUTH=


# The EHLO reply ------------------------------------------------------------
def ehlo_keywords(databytes: int, max_recipients: int, max_messages: int, xclient: bool) -> list[str]:
    """The extensions EHLO advertises; plugins' (connection.capabilities) and AUTH follow them."""
    keywords = ["PIPELINING", "8BITMIME", f"SIZE {databytes}" if databytes else "SIZE", "ENHANCEDSTATUSCODES",
                "SMTPUTF8", "CHUNKING", "DSN"]
    # RFC 9422 LIMITS; a limit of 0 (unlimited) is left out.
    limits = [f"{name}={value}" for name, value in (("RCPTMAX", max_recipients), ("MAILMAX", max_messages))
              if value > 0]
    if limits:
        keywords.append("LIMITS " + " ".join(limits))
    if xclient:
        keywords.append("XCLIENT " + " ".join(XCLIENT_ATTRIBUTES))
    return keywords


# Parameters --------------------------------------------------------------
def parse_params(text: str) -> dict[str, str | None]:
    """Parse ESMTP parameters ('SIZE=100 SMTPUTF8') into an upper-cased dict."""
    params: dict[str, str | None] = {}
    for token in text.split(" "):
        if not token:
            continue  # tolerate repeated spaces
        key, eq, value = token.partition("=")
        # isprintable() rules out controls, non-ASCII spaces and lone surrogates
        bad_value = eq and (not value or "=" in value or not value.isprintable())
        if not _is_keyword(key) or bad_value or key.upper() in params:
            raise AddressError(501, "5.5.4", "Syntax error in parameters")
        params[key.upper()] = value if eq else None
    return params


def _is_keyword(key: str) -> bool:
    return bool(key) and key[0] != "-" and all(c in _KEYWORD_CHARS for c in key)


def _syntax(text: str) -> Reply:
    return Reply(501, text, "5.5.4")


def _size(value: str | None, limits: Limits) -> Reply | None:
    size = number(value)
    if size is None:
        return _syntax("Bad SIZE parameter")
    if limits.databytes and size > limits.databytes:
        return Reply(552, "Message size exceeds fixed maximum message size", "5.3.4")
    return None


def _body(value: str | None, limits: Limits) -> Reply | None:
    return None if (value or "").upper() in ("7BIT", "8BITMIME") else _syntax("Bad BODY parameter")


def _smtputf8(value: str | None, limits: Limits) -> Reply | None:
    return None if value is None else _syntax("SMTPUTF8 takes no value")


def _auth(value: str | None, limits: Limits) -> Reply | None:
    try:
        if decode_xtext(value or ""):
            return None
    except ValueError:
        pass
    return _syntax("Bad AUTH parameter")


def _dsn(key: str):
    def check(value: str | None, limits: Limits) -> Reply | None:
        error = check_dsn_param(key, value)
        return _syntax(error) if error else None
    return check


MAIL_PARAMETERS = {"SIZE": _size, "BODY": _body, "SMTPUTF8": _smtputf8, "RET": _dsn("RET"),
                   "ENVID": _dsn("ENVID"), "AUTH": _auth}
RCPT_PARAMETERS = {"NOTIFY": _dsn("NOTIFY"), "ORCPT": _dsn("ORCPT")}


def check_params(table: dict, params: dict, esmtp: bool, limits: Limits, taken: frozenset = frozenset()) -> Reply | None:
    """The first error in `params` of MAIL (table MAIL_PARAMETERS) or RCPT, or None; `taken`: plugins' parameters."""
    if params and not esmtp:
        return Reply(555, "MAIL parameters need EHLO", "5.5.4") if table is MAIL_PARAMETERS \
            else Reply(555, f"Unsupported parameter {next(iter(params))}", "5.5.4")
    for key, value in params.items():
        check = table.get(key)
        if check is None or (key == "AUTH" and not limits.auth):
            if key in taken:
                continue
            return Reply(555, f"Unsupported parameter {key}", "5.5.4")
        error = check(value, limits)
        if error is not None:
            return error
    return None


def check_dsn_param(key: str, value: str | None) -> str | None:
    """An RFC 3461 MAIL (RET, ENVID) or RCPT (NOTIFY, ORCPT) parameter: None if valid, else what is wrong."""
    if value is None:
        return f"{key} needs a value"
    if key == "RET":
        return None if value.upper() in ("FULL", "HDRS") else "RET must be FULL or HDRS"
    if key == "ENVID":
        return None if value and len(value) <= 100 and is_xtext(value) else "ENVID must be xtext of 1-100 characters"
    if key == "NOTIFY":
        words = value.upper().split(",")
        if words == ["NEVER"] or (words and len(set(words)) == len(words)
                                  and all(w in ("SUCCESS", "FAILURE", "DELAY") for w in words)):
            return None
        return "NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY"
    if key == "ORCPT":
        addr_type, semi, addr = value.partition(";")
        if semi and addr and len(value) <= 500 and addr_type and all(c in _KEYWORD_CHARS for c in addr_type) \
                and addr_type[0] in _ALNUM and is_xtext(addr):
            return None
        return "ORCPT must be addr-type;xtext"
    return f"{key} is not a DSN parameter"


# xtext (RFC 3461 4): DSN's ENVID/ORCPT, MAIL's AUTH=, XCLIENT and XFORWARD values ----------------
def _xtext_octets(value: str) -> bytearray | None:
    """The octets `value` stands for: `!`..`~` except `+` and `=`, or `+HH` (upper-case hex); None if malformed."""
    out = bytearray()
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c == "+":
            if i + 3 > n or value[i + 1] not in _HEX_UPPER or value[i + 2] not in _HEX_UPPER:
                return None
            out.append(int(value[i + 1:i + 3], 16))
            i += 3
        elif "!" <= c <= "~" and c != "=":
            out.append(ord(c))
            i += 1
        else:
            return None
    return out


def is_xtext(value: str) -> bool:
    """True if `value` is well-formed xtext. Empty is xtext too."""
    return _xtext_octets(value) is not None


def decode_xtext(value: str) -> str:
    """The text `value` stands for (UTF-8). Raises ValueError if malformed or if it decodes to a control."""
    octets = _xtext_octets(value)
    if octets is None:
        raise ValueError("bad xtext")
    text = octets.decode("utf-8", "replace")
    if not text.isprintable():
        raise ValueError("bad xtext")
    return text


def encode_xtext(value: str) -> str:
    """`value` as xtext, as XCLIENT and XFORWARD want attribute values."""
    return "".join(c if "!" <= c <= "~" and c not in "+=" else "".join(f"+{b:02X}" for b in c.encode())
                   for c in value)


# The argument of MAIL and RCPT, with the plugins' say ------------------------------------------------
def mail_argument(session, arg: str, keyword: str, pre_hook: str):
    """(path text, params dict) from a MAIL/RCPT argument, or None after an error reply.

    A `mail_parse`/`rcpt_parse` plugin may parse the argument itself (qpsmtpd's); then the
    `mail_pre`/`rcpt_pre` hooks may replace the path (`(OK, "<new path>")`).
    """
    parsed = command_argument(session, arg, pre_hook.replace("_pre", "_parse"))
    if parsed is False:
        return None
    try:
        path, rest = parsed if parsed else split_mail_arg(arg, keyword)
    except AddressError as exc:
        session.protocol_error(Reply(exc.code, exc.text, exc.enhanced))
        return None
    result = session.host.run(pre_hook, session.txn, path, rest)
    if result.code == OK and result.lines:
        path = result.lines[0]
    elif result.code not in (OK, DECLINED):
        session.answer(pre_hook, result, Reply(451, "Internal error", "4.3.0"))
        return None
    try:
        params = parse_params(rest) if rest.strip() else {}
    except AddressError as exc:
        session.protocol_error(Reply(exc.code, exc.text, exc.enhanced))
        return None
    return path, params


def command_argument(session, arg: str, hook: str):
    """A `*_parse` hook's own parser of a command's argument (pluginhost.parse): None if no plugin gives
    one, False after an error reply (501, or 451 if the parser failed), else (first value, the rest)."""
    outcome = session.host.parse(hook, session.txn, arg) if session.host.has(hook) else None
    if isinstance(outcome, Reply):
        (session.respond if outcome.code == 451 else session.protocol_error)(outcome)
        return False
    return outcome
