"""DKIM (RFC 6376) with dkimpy: verifying every signature of a message, and signing one.

dkimpy is imported by load() only, when a message needs it, and without the
dnspython import its DNS module would do: the connection's resolver (dns.py)
answers its key queries. The plugin is plugins/dkim.py.
"""

from . import dns

MAX_SIGNATURES = 10
BUILTIN_HASH_MAX = 256 * 1024  # octets; built-in SHA-256 runs ~6x slower than OpenSSL's
RANK = ("pass", "temperror", "fail", "policy", "permerror", "neutral", "none")  # best first


def load(size: int | None = None):
    """dkimpy, with a stub for its DNS module (~40-90 ms of dnspython imports saved), without logging
    (standins.py: ~10 ms; it logs only to a logger not given, and this module always gives _Log), and without
    functools (~3 ms), of which the `re` it imports takes two names.

    For a message of `size` octets up to BUILTIN_HASH_MAX, dkimpy's SHA-1 and SHA-256 are the built-in ones,
    not hashlib's OpenSSL: loading libcrypto costs ~3 ms (10 M instructions), more than the built-in code's
    slower hashing of such a message. Once imported, dkimpy keeps the hashes it took.
    """
    import sys

    from .standins import import_with, lent_functools, stand_in

    if "dkim" not in sys.modules and "dkim.dnsplug" not in sys.modules:
        sys.modules["dkim.dnsplug"] = stand_in("dkim.dnsplug", get_txt=lambda name, timeout=5: None)
    lent = [stand_in("logging", DEBUG=10, NullHandler=_null_handler), lent_functools()]
    if size is not None and size <= BUILTIN_HASH_MAX:
        lent += _builtin_hashes()
    return import_with("dkim", *lent)


def _builtin_hashes() -> list:
    """A hashlib stand-in with CPython's built-in SHA-1 and SHA-256; none if this Python lacks them."""
    from .standins import stand_in

    try:
        from _sha1 import sha1
        from _sha256 import sha256
    except ImportError:
        return []
    return [stand_in("hashlib", sha1=sha1, sha256=sha256)]


def _null_handler():
    import logging

    return logging.NullHandler()


def verify(message: bytes, resolver) -> list[dict]:
    """One dict per DKIM-Signature (at most MAX_SIGNATURES): result, reason, domain, selector, identity, b.

    Every key query goes out at once; each verification reads its answer.
    """
    dkim = load(len(message))
    verifier = dkim.DKIM(message, logger=_Log(), timeout=resolver.timeout)
    signatures = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"][:MAX_SIGNATURES]
    tags = [parse_tags(value) for value in signatures]
    for t in tags:
        if t.get("s") and t.get("d"):
            resolver.query(f"{t['s']}._domainkey.{t['d']}", "TXT")
    results = []
    for idx, t in enumerate(tags):
        state: dict = {}

        def txt(name, timeout=5, state=state):
            answer = resolver.lookup(name.decode("ascii", "replace") if isinstance(name, bytes) else name, "TXT")
            state["status"] = answer.status
            if answer.temporary:
                raise dkim.DnsTimeoutError(answer.status)
            return answer.records[0].encode("latin-1") if answer.records else None

        verifier.logger.errors.clear()
        try:
            result, reason = ("pass", "") if verifier.verify(idx, dnsfunc=txt) else ("fail", "signature did not verify")
        except dkim.KeyFormatError as exc:
            result, reason = ("policy" if "too small" in str(exc) else "permerror"), str(exc)
        except dkim.ValidationError as exc:
            result, reason = ("fail" if "body hash" in str(exc) else "neutral"), str(exc)
        except dkim.DKIMException as exc:
            result, reason = "neutral", str(exc)
        if result == "fail" and state.get("status") and not state["status"] == "NOERROR":
            result, reason = ("temperror", state["status"]) if state["status"] not in dns.FINAL else ("permerror", "no key")
        elif result == "fail" and verifier.logger.errors:
            result, reason = "permerror", verifier.logger.errors[-1]
        reason = dns.printable(reason.split(" (got ")[0], 100).replace("(", "[").replace(")", "]").replace("\\", "/")
        results.append({"result": result, "reason": reason,
                        "domain": t.get("d", "").lower(), "selector": t.get("s", ""), "identity": t.get("i", ""),
                        "b": t.get("b", "")[:8]})
    return results


def parse_tags(value: bytes) -> dict[str, str]:
    tags = {}
    for item in value.decode("ascii", "replace").split(";"):
        key, _, val = item.partition("=")
        tags[key.strip()] = "".join(val.split())
    return tags


def signing_key(config, domain: str) -> tuple[str, str, str] | None:
    """(domain, selector, PEM key) from config dkim/DOMAIN/{selector,private}, or the nearest parent's; None."""
    labels = domain.lower().rstrip(".").split(".")
    if not all(label and all(c.isalnum() or c == "-" for c in label) and label.isascii() for label in labels):
        return None  # never a path (`..`, `/`) into the config dir
    for i in range(len(labels) - 1):
        candidate = ".".join(labels[i:])
        selector, key = config(f"dkim/{candidate}/selector"), config(f"dkim/{candidate}/private")
        if selector and key:
            return candidate, selector[0], "\n".join(key) + "\n"
    return None


def sign(message: bytes, domain: str, selector: str, key: str) -> list[str]:
    """The DKIM-Signature value as lines to fold (rsa-sha256, relaxed/relaxed); raises dkim.DKIMException."""
    dkim = load(len(message))
    value = dkim.DKIM(message, logger=_Log()).sign(selector.encode(), domain.encode(), key.encode(),
                                                  canonicalize=(b"relaxed", b"relaxed"))
    lines = [line.strip() for line in value.decode("ascii").split("\r\n")]
    lines[0] = lines[0].partition(":")[2].strip()
    return [line for line in lines if line]


class _Log:
    """dkimpy's logger: its errors are kept (they say why a key was refused); the rest is dropped."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, message, *args) -> None:
        self.errors.append(str(message))

    def debug(self, *args, **kw) -> None:
        pass

    info = warning = debug
