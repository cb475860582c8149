r"""Matching the entries of the block-list config files: badmailfrom and badrcptto, badhelo.

Both kinds of list, as in qpsmtpd, hold literal entries and patterns; a line
that holds a pattern character is a regular expression in Python `re` syntax
(qpsmtpd: Perl), searched unanchored and case-insensitively. `re` is imported
only when a pattern is met, and input longer than any valid address or name
never reaches a regex. A pattern that does not compile is logged and skipped.
"""

from .constants import LOGWARN

MAX_ADDRESS = 320  # an address is at most 64 + 1 + 255 octets
MAX_NAME = 255     # a domain name is at most 255 octets
ADDRESS_PATTERN_CHARS = frozenset("/^$*+!%?\\")
NAME_PATTERN_CHARS = frozenset("{}[]()^$|*+?\\!")


def address_matches(entry: str, address: str, host: str, log, config: str) -> bool:
    """True if `address` (lower-case `user@host`, `host` its domain) is covered by the list entry `entry`.

    Entries: `user@host` (that address), `@host` (every address at that host),
    or a pattern (any of / ^ $ * + ! % ? \\), which also matches an address
    equal to it (`a+b@example.com`). `log(level, message)` reports a bad entry,
    naming the config file `config`.
    """
    if ADDRESS_PATTERN_CHARS.intersection(entry):
        if entry.lower() == address:
            return True
        if len(address) > MAX_ADDRESS:
            log(LOGWARN, f"address of {len(address)} octets not matched against pattern {entry}")
            return False
        import re

        try:
            return re.search(entry, address, re.IGNORECASE) is not None
        except re.error as exc:
            log(LOGWARN, f"config {config}: bad pattern {entry!r} skipped: {exc}")
            return False
    entry = entry.lower()
    if "@" not in entry:
        log(LOGWARN, f"config {config}: no @ in {entry!r}; skipped")
        return False
    if entry.startswith("@"):
        return entry[1:] == host
    return entry == address


def helo_listed(entries: list[str], host: str, log) -> tuple[str, str] | None:
    """(reply text, log text) if the HELO name `host` is refused by the badhelo `entries`, else None.

    An entry holding any of {}[]()^$|*+?\\! is a pattern, a leading ! negating
    it; other entries are names, compared case-insensitively. Every entry is
    checked, in order, until one refuses.
    """
    host = host.lower()
    for bad in entries:
        if not NAME_PATTERN_CHARS.intersection(bad):
            if host == bad.lower():
                return f"I do not believe you are {host}.", "in badhelo"
            continue
        if len(host) > MAX_NAME:
            log(LOGWARN, f"name of {len(host)} octets not matched against pattern {bad}")
            continue
        import re

        negate = bad.startswith("!")
        try:
            found = re.search(bad[1:] if negate else bad, host, re.IGNORECASE) is not None
        except re.error as exc:
            log(LOGWARN, f"config badhelo: bad pattern {bad!r} skipped: {exc}")
            continue
        if found != negate:
            return "Your HELO hostname is not allowed", f"badhelo pattern match ({bad})"
    return None
