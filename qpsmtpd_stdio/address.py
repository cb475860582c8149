"""SMTP path parsing for MAIL FROM / RCPT TO (RFC 5321 4.1.2, 4.5.3.1; RFC 6531).

Reply codes used by AddressError:
  501 5.5.2  control (or, with SMTPUTF8, non-printable) characters
  501 5.5.4  no angle brackets; bad MAIL/RCPT keyword; bad ESMTP parameters
  501 5.1.3  syntax error inside the path; null path where not allowed
  553 5.1.3  length limit: local part 64, label 63, domain 255, address 256, input 512
  553 5.6.7  non-ASCII address without SMTPUTF8
All scans are linear and the raw length is capped first, so hostile input stays cheap.
"""

from .netlist import canonical_ip

MAX_INPUT = 512     # an SMTP command line is at most 512 octets anyway
MAX_ADDRESS = 256   # RFC 5321 4.5.3.1.3
MAX_LOCAL = 64      # RFC 5321 4.5.3.1.1
MAX_DOMAIN = 255    # RFC 5321 4.5.3.1.2
MAX_LABEL = 63

_CTRL = dict.fromkeys(range(0x20)) | {0x7F: None}  # str.translate table that deletes controls
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ATEXT = frozenset(_ALNUM + "!#$%&'*+-/=?^_`{|}~")
_LDH = frozenset(_ALNUM + "-")
# No `re` here: it costs ~6 ms of imports on every connection.


def _quoted_end(box: str) -> int:
    """Length of the Quoted-string at the start of box, or 0 if there is none.

    Controls are rejected before this runs, so any char but `"` and `\\` is
    qtextSMTP (plus UTF-8); a backslash must quote a printable ASCII char.
    """
    i, n = 1, len(box)
    while i < n:
        c = box[i]
        if c == '"':
            return i + 1
        if c == "\\":
            if i + 1 >= n or not " " <= box[i + 1] <= "~":
                return 0
            i += 2
        else:
            i += 1
    return 0


class AddressError(ValueError):
    """Raised for an unparsable path; carries the SMTP reply to send."""

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        super().__init__(f"{code} {enhanced} {text}")
        self.code = code
        self.enhanced = enhanced
        self.text = text


class Address:
    """An SMTP mailbox. Compares case-insensitively on host only (RFC 5321 2.4)."""

    __slots__ = ("user", "host")

    def __init__(self, user: str = "", host: str = "") -> None:
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "host", host)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Address is immutable")  # it is used as a dict/set key

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}" if self.host else self.user

    @property
    def is_null(self) -> bool:
        return not self.user and not self.host

    @property
    def is_ascii(self) -> bool:
        return self.user.isascii() and self.host.isascii()

    def __str__(self) -> str:
        return f"<{self.address}>"

    def __repr__(self) -> str:
        return f"Address({self.user!r}, {self.host!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Address):
            return NotImplemented
        return self.user == other.user and self.host.lower() == other.host.lower()

    def __hash__(self) -> int:
        return hash((self.user, self.host.lower()))

    @classmethod
    def parse(cls, text: str) -> "Address":
        """Lenient convenience for plugins/tests: brackets optional, null,
        SMTPUTF8 and bare postmaster accepted."""
        text = text.strip(" ")  # only spaces: never silently drop a CR/LF
        if not text.startswith("<"):
            text = f"<{text}>"
        return parse_path(text, allow_null=True, allow_utf8=True, allow_bare_postmaster=True)


def _syntax(why: str) -> AddressError:
    return AddressError(501, "5.1.3", f"Syntax error in address: {why}")


def _too_long(what: str) -> AddressError:
    return AddressError(553, "5.1.3", f"{what} too long")


def split_mail_arg(arg: str, keyword: str) -> tuple[str, str]:
    """Split 'FROM:<a@b> SIZE=10' into ('<a@b>', 'SIZE=10')."""
    verb = {"FROM": "MAIL FROM", "TO": "RCPT TO"}.get(keyword.upper(), keyword)
    err = AddressError(501, "5.5.4", f"Syntax: {verb}:<address>")
    arg = arg.lstrip(" ")
    n = len(keyword)
    if arg[:n].upper() != keyword.upper() or arg[n : n + 1] != ":":
        raise err
    rest = arg[n + 1 :].lstrip(" ")  # 'MAIL FROM: <a>' is common, qpsmtpd/Postfix accept it
    if not rest:
        raise err
    # the path ends at the first space outside "..." and <...>
    quote = angle = escaped = False
    for i, c in enumerate(rest):
        if escaped or (quote and c == "\\"):
            escaped = not escaped
        elif c == '"':
            quote = not quote
        elif not quote and c in "<>":
            angle = c == "<"
        elif c == " " and not quote and not angle:
            return rest[:i], rest[i:].strip(" ")
    return rest, ""


def literal_ip(host: str) -> str | None:
    """The address in an RFC 5321 address literal ([192.0.2.1], [IPv6:2001:db8::1]), canonical; else None."""
    if not (host.startswith("[") and host.endswith("]") and host.isascii()):
        return None
    body = host[1:-1]
    if body[:5].lower() == "ipv6:":
        return (canonical_ip(body[5:]) or None) if ":" in body[5:] else None
    return dotted_quad(body)


def dotted_quad(text: str) -> str | None:
    """An IPv4 address as RFC 5321 writes it (Snum: 1-3 digits, leading zeros allowed), canonical; else None."""
    parts = text.split(".")
    if len(parts) == 4 and all(p.isascii() and p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        return ".".join(str(int(p)) for p in parts)
    return None


def _check_literal(lit: str) -> None:
    if literal_ip(lit) is None:  # other General-address-literal tags are not supported
        raise _syntax("invalid address literal")


def _check_domain(domain: str, literal_ok: bool = True) -> None:
    if not domain:
        raise _syntax("missing domain")
    if domain.startswith("[") and literal_ok:
        return _check_literal(domain)
    if len(domain.encode()) > MAX_DOMAIN:
        raise _too_long("domain")
    if domain.endswith("."):
        raise _syntax("trailing dot in domain")  # would confuse relay checks
    for label in domain.split("."):
        if not label:
            raise _syntax("empty domain label")
        if len(label.encode()) > MAX_LABEL:
            raise _too_long("domain label")
        # non-ASCII chars are U-label content (RFC 6531); already gated by the caller
        if label[0] == "-" or label[-1] == "-" or not all(c in _LDH or c > "\x7f" for c in label):
            raise _syntax("invalid domain")


def parse_path(text: str, *, allow_null: bool = False, allow_utf8: bool = False,
               allow_bare_postmaster: bool = False) -> Address:
    """Parse '<[@route,@route:]local@domain>' into an Address; the route is dropped.
    Reply codes: see the module docstring."""
    if len(text.translate(_CTRL)) != len(text):
        raise AddressError(501, "5.5.2", "control characters are not allowed")
    if len(text) > MAX_INPUT:
        raise _too_long("path")
    if not text.isascii():
        if not allow_utf8:
            raise AddressError(553, "5.6.7", "non-ASCII address requires SMTPUTF8")
        if not text.isprintable():  # C1 controls, U+2028, NBSP, lone surrogates...
            raise AddressError(501, "5.5.2", "non-printable characters are not allowed")
    if len(text) < 2 or text[0] != "<" or text[-1] != ">":
        raise AddressError(501, "5.5.4", "Syntax error in address: angle brackets required")
    box = text[1:-1]
    if not box:
        if not allow_null:
            raise AddressError(501, "5.1.3", "null address not allowed here")
        return Address("", "")
    if box != box.strip(" "):
        raise _syntax("whitespace not allowed inside angle brackets")
    if allow_bare_postmaster and box.lower() == "postmaster":
        return Address("postmaster", "")
    if box[0] == "@":  # source route: validate, then ignore (RFC 5321 3.3, C)
        route, colon, box = box.partition(":")
        if not colon:
            raise _syntax("missing local part")
        for hop in route.split(","):
            if hop[:1] != "@":
                raise _syntax("invalid source route")
            _check_domain(hop[1:], literal_ok=False)
    if box[:1] == '"':
        end = _quoted_end(box)
        local, at, domain = box[:end], box[end : end + 1], box[end + 1 :]
        if not end or at != "@":
            raise _syntax("invalid quoted local part")
    else:
        local, at, domain = box.partition("@")
        if not at:
            raise _syntax("missing @")
        # Dot-string; non-ASCII chars are atext under SMTPUTF8 (gated above)
        if not all(a and all(c in _ATEXT or c > "\x7f" for c in a) for a in local.split(".")):
            raise _syntax("invalid local part")
    if "@" in domain:
        raise _syntax("more than one @")
    if len(local.encode()) > MAX_LOCAL:
        raise _too_long("local part")
    _check_domain(domain)
    addr = Address(local, domain)
    if len(addr.address.encode()) > MAX_ADDRESS:
        raise _too_long("address")
    return addr
