"""Numbers from outside (the wire, config files, DNS, headers), read in one way: ASCII digits only, bounded.

`str.isdigit()` is true for `²` and `٣`, which `int()` then refuses or reads;
`int()` alone takes signs, spaces and underscores. Every number that comes
from outside is read by `number()` instead.
"""

_DIGITS = frozenset("0123456789")
MAX_DIGITS = 20  # more than any setting or field needs; int() of a huge string costs CPU


def number(text: str | bytes | None, maximum: int | None = None, digits: int = MAX_DIGITS) -> int | None:
    """The integer that `text` spells in 1 to `digits` ASCII digits, or None (also above `maximum`)."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    if not text or len(text) > digits or not _DIGITS.issuperset(text):
        return None
    value = int(text)
    return None if maximum is not None and value > maximum else value
