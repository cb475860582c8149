"""SPF (RFC 7208): check_host(), and the plugin that applies it (sender_permitted_from, alias spf).

    result = check_host("192.0.2.1", "alice@example.org", "mail.example.org", lookup)
    result.result        # pass fail softfail neutral none temperror permerror

`lookup` takes a list of (name, type) and returns a dns.Answer for each: the
plugin passes the connection's resolver (all of a term's queries go out
together), the tests a dict built from the RFC 7208 test suite. Every
mechanism and modifier of RFC 7208 is evaluated (all include a mx ptr ip4
ip6 exists, redirect exp, unknown modifiers checked for syntax), with macros
(7.x), the limits of 4.6.4 (10 DNS-querying terms, 10 MX, 10 PTR names, 2
void lookups), and the whole record checked for syntax before evaluation
(4.6). The null sender is checked as postmaster@HELO (2.4).

The plugin is plugins/sender_permitted_from.py (also loaded as `spf`).
"""

from .digits import number
from . import dns
from .dnswire import encode_name
from .netlist import in_network, ip_text, parse_ip

MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
MAX_LOOKUPS = 10   # DNS-querying terms: include a mx ptr exists redirect (4.6.4)
MAX_VOID = 2       # lookups answering NXDOMAIN or no data
MAX_MX = 10        # MX records a mx mechanism may return
MAX_PTR = 10       # PTR names looked at by ptr and %{p}
_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_DELIMITERS = ".-+,/_="
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_LETTERS = "slodiphv"
_EXP_LETTERS = "slodiphvcrt"


class SPFError(Exception):
    """Ends the evaluation with `result` (temperror or permerror)."""

    def __init__(self, result: str, why: str) -> None:
        super().__init__(why)
        self.result = result
        self.why = why


class Result:
    """What check_host() found. `explanation` only for fail; `mechanism` is the term that matched."""

    __slots__ = ("result", "domain", "mechanism", "explanation", "why")

    def __init__(self, result: str, domain: str, mechanism: str = "", explanation: str = "", why: str = "") -> None:
        self.result = result
        self.domain = domain
        self.mechanism = mechanism
        self.explanation = explanation
        self.why = why

    def __repr__(self) -> str:
        return f"<SPF {self.result} {self.domain} {self.mechanism or self.why!r}>"


def check_host(ip: str, sender: str, helo: str, lookup, receiver: str = "unknown") -> Result:
    """Evaluate the SPF record of `sender`'s domain (or of `helo` when sender is "") for client `ip`."""
    check = _Check(ip, sender, helo, lookup, receiver)
    try:
        result, mechanism, exp, exp_domain = check.check_host(check.domain)
    except SPFError as exc:
        return Result(exc.result, check.domain, why=exc.why)
    explanation = check.explain(exp, exp_domain) if result == "fail" else ""
    return Result(result, check.domain, mechanism,
                  explanation or (f"{check.domain} does not designate {check.ip} as permitted sender"
                                  if result == "fail" else ""))


def resolver_lookup(resolver):
    """A `lookup` for check_host that asks the connection's resolver, all questions at once."""
    return resolver.lookup_many


class _Check:
    def __init__(self, ip: str, sender: str, helo: str, lookup, receiver: str) -> None:
        self.packed = parse_ip(ip)
        if self.packed is None:
            raise ValueError(f"not an IP address: {ip!r}")
        self.v4 = len(self.packed) == 4
        self.ip = ip_text(self.packed)
        self.rdtype = "A" if self.v4 else "AAAA"
        local, _, domain = sender.rpartition("@") if sender else ("", "", helo)
        self.local = local or "postmaster"
        self.domain = domain.rstrip(".")
        self.sender = f"{self.local}@{self.domain}"
        self.helo = helo
        self.lookup = lookup
        self.receiver = receiver
        self.lookups = 0
        self.voids = 0
        self._validated = None

    # DNS --------------------------------------------------------------
    def ask(self, questions) -> list:
        """Answers to [(name, type)]; a name DNS cannot carry answers BADNAME without a query."""
        sendable = [(n, t) for n, t in questions if encode_name(n) is not None]
        answers = iter(self.lookup(sendable) if sendable else ())
        return [next(answers) if encode_name(n) is not None else dns.Answer(n, t, "BADNAME")
                for n, t in questions]

    def count(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise SPFError("permerror", f"more than {MAX_LOOKUPS} DNS-querying terms")

    def checked(self, answer):
        """The answer of a term's lookup: temperror on a DNS failure, permerror past the void limit."""
        if answer.temporary:
            raise SPFError("temperror", f"DNS {answer.status} for {answer.name} {answer.rdtype}")
        if answer.void:
            self.voids += 1
            if self.voids > MAX_VOID:
                raise SPFError("permerror", f"more than {MAX_VOID} void lookups")
        return answer

    def validated_names(self) -> list[str]:
        """PTR names of the client whose A/AAAA include it (5.5), for ptr and %{p}."""
        if self._validated is None:
            answer = self.ask([(dns.ptr_name(self.ip), "PTR")])[0]
            names = [] if answer.temporary else answer.records[:MAX_PTR]
            forward = self.ask([(name, self.rdtype) for name in names])
            self._validated = [name for name, f in zip(names, forward)
                               if any(parse_ip(a) == self.packed for a in f.records)]
        return self._validated

    # check_host() ------------------------------------------------------
    def check_host(self, domain: str):
        """(result, matched term, exp= domain-spec or None, the domain it belongs to)."""
        if not valid_domain(domain):
            return "none", "", None, domain
        answer = self.ask([(domain, "TXT")])[0]
        if answer.temporary:
            raise SPFError("temperror", f"DNS {answer.status} for {domain} TXT")
        records = [r for r in answer.records if r[:6].lower() == "v=spf1" and r[6:7] in ("", " ")]
        if not records:
            return "none", "", None, domain
        if len(records) > 1:
            raise SPFError("permerror", f"{domain} has {len(records)} SPF records")
        if not records[0].isascii():
            raise SPFError("permerror", f"{domain}: SPF record is not ASCII")
        terms, redirect, exp = parse_record(records[0])
        for qualifier, name, arg, cidr4, cidr6, text in terms:
            if self.matches(name, arg, cidr4, cidr6, domain):
                return _QUALIFIERS[qualifier], text, exp, domain
        if redirect is not None:
            self.count()
            target = self.expand(redirect, domain)
            found = self.check_host(target)
            if found[0] == "none":
                raise SPFError("permerror", f"redirect={target}: no SPF record")
            return found
        return "neutral", "", exp, domain

    def matches(self, name: str, arg, cidr4: int, cidr6: int, domain: str) -> bool:
        if name == "all":
            return True
        if name in ("ip4", "ip6"):  # an IPv4 client matches only ip4, an IPv6 one only ip6 (5.6)
            return (name == "ip4") == self.v4 and in_network(self.packed, arg, cidr4)
        self.count()
        target = self.expand(arg, domain) if arg is not None else domain
        if name == "include":
            result = self.check_host(target)[0]
            if result == "none":
                raise SPFError("permerror", f"include:{target}: no SPF record")
            return result == "pass"
        if name == "exists":
            return bool(self.checked(self.ask([(target, "A")])[0]).records)
        if name == "a":
            return self.ip_in(self.checked(self.ask([(target, self.rdtype)])[0]).records, cidr4, cidr6)
        if name == "mx":
            answer = self.checked(self.ask([(target, "MX")])[0])
            if len(answer.records) > MAX_MX:
                raise SPFError("permerror", f"{target} has more than {MAX_MX} MX records")
            hosts = [host for _, host in sorted(answer.records) if host]
            for found in self.ask([(host, self.rdtype) for host in hosts]):
                if found.temporary:
                    raise SPFError("temperror", f"DNS {found.status} for {found.name} {found.rdtype}")
                if self.ip_in(found.records, cidr4, cidr6):
                    return True
            return False
        # ptr (5.5): a DNS error in the PTR lookup is no match
        answer = self.ask([(dns.ptr_name(self.ip), "PTR")])[0]
        if answer.temporary:
            return False
        self.checked(answer)
        target = target.lower()
        return any(n.lower() == target or n.lower().endswith("." + target) for n in self.validated_names())

    def ip_in(self, addresses, cidr4: int, cidr6: int) -> bool:
        for address in addresses:
            packed = parse_ip(address)
            if packed is not None and in_network(self.packed, packed, cidr4 if self.v4 else cidr6):
                return True
        return False

    # Macros (7) -----------------------------------------------------------
    def expand(self, spec: str, domain: str, exp: bool = False) -> str:
        out = []
        for token in macro_tokens(spec, exp):
            if isinstance(token, str):
                out.append(token)
                continue
            letter, digits, reverse, delimiters = token
            value = self.macro_value(letter.lower(), domain)
            parts = value
            for d in delimiters or ".":
                parts = parts.replace(d, "\0")
            parts = parts.split("\0")
            if reverse:
                parts.reverse()
            if digits:
                parts = parts[-digits:]
            value = ".".join(parts)
            if letter.isupper():
                value = "".join(c if c in _UNRESERVED else "".join(f"%{b:02X}" for b in c.encode("utf-8"))
                                for c in value)
            out.append(value)
        text = "".join(out)
        if exp:
            return text
        if text.endswith("."):
            text = text[:-1]
        while len(text) > 253 and "." in text:  # 7.3: drop labels from the left
            text = text.split(".", 1)[1]
        return text

    def macro_value(self, letter: str, domain: str) -> str:
        if letter == "s":
            return self.sender
        if letter == "l":
            return self.local
        if letter == "o":
            return self.domain
        if letter == "d":
            return domain
        if letter == "i":
            return ".".join(str(b) for b in self.packed) if self.v4 else ".".join(self.packed.hex())
        if letter == "p":
            names = self.validated_names()
            lowered = domain.lower()
            best = [n for n in names if n.lower() == lowered or n.lower().endswith("." + lowered)]
            return (best or names or ["unknown"])[0]
        if letter == "v":
            return "in-addr" if self.v4 else "ip6"
        if letter == "h":
            return self.helo
        if letter == "c":
            return self.ip
        if letter == "r":
            return self.receiver
        import time  # "t"

        return str(int(time.time()))

    def explain(self, spec, domain: str) -> str:
        """The exp= text (6.2), or "" when there is none or it cannot be had."""
        if spec is None:
            return ""
        try:
            answer = self.ask([(self.expand(spec, domain), "TXT")])[0]
            if answer.temporary or len(answer.records) != 1 or not answer.records[0].isascii():
                return ""
            return dns.printable(self.expand(answer.records[0], domain, exp=True))
        except SPFError:
            return ""


# Syntax (4.6, 5, 6, 7.1) --------------------------------------------------------
def parse_record(record: str):
    """([(qualifier, name, arg, cidr4, cidr6, text)], redirect, exp) from a v=spf1 record; SPFError if invalid."""
    terms, modifiers = [], {}
    for term in record[6:].split(" "):
        if not term:
            continue
        qualifier, body = (term[0], term[1:]) if term[0] in _QUALIFIERS else ("+", term)
        i = 0
        while i < len(body) and body[i].isascii() and (body[i].isalnum() or body[i] in "-_."):
            i += 1
        name, rest = body[:i].lower(), body[i:]
        if rest.startswith("="):
            if qualifier != "+" or term[0] == "+" or not name or not name[0].isalpha():
                raise SPFError("permerror", f"bad modifier {term!r}")
            if name in ("redirect", "exp"):
                if name in modifiers:
                    raise SPFError("permerror", f"{name}= appears twice")
                check_domain_spec(rest[1:])
                modifiers[name] = rest[1:]
            else:
                macro_tokens(rest[1:])  # unknown modifiers: only their syntax matters
            continue
        if name not in MECHANISMS:
            raise SPFError("permerror", f"unknown mechanism {term!r}")
        terms.append((qualifier, name) + _mechanism_argument(name, rest, term) + (term,))
    return terms, modifiers.get("redirect"), modifiers.get("exp")


def _mechanism_argument(name: str, rest: str, term: str):
    """(arg, cidr4, cidr6): arg is a domain-spec, a packed network (ip4/ip6) or None."""
    cidr4, cidr6 = 32, 128
    if name in ("a", "mx"):
        if "//" in rest and _cidr(rest[rest.rfind("//") + 2:], 128) is not None:
            cidr6 = _cidr(rest[rest.rfind("//") + 2:], 128)
            rest = rest[:rest.rfind("//")]
        if "/" in rest and _cidr(rest[rest.rfind("/") + 1:], 32) is not None:
            cidr4 = _cidr(rest[rest.rfind("/") + 1:], 32)
            rest = rest[:rest.rfind("/")]
    if name in ("ip4", "ip6"):
        if not rest.startswith(":"):
            raise SPFError("permerror", f"{term!r}: address missing")
        address, slash, bits = rest[1:].partition("/")
        limit = 32 if name == "ip4" else 128
        prefix = _cidr(bits, limit) if slash else limit
        try:
            import _socket

            packed = _socket.inet_pton(_socket.AF_INET if name == "ip4" else _socket.AF_INET6, address)
        except (OSError, ValueError):
            packed = None
        if packed is None or prefix is None:
            raise SPFError("permerror", f"bad network in {term!r}")
        return packed, prefix, prefix
    if rest == "" and name in ("all", "a", "mx", "ptr"):
        return None, cidr4, cidr6
    if name == "all" or not rest.startswith(":"):
        raise SPFError("permerror", f"bad mechanism {term!r}")
    check_domain_spec(rest[1:])
    return rest[1:], cidr4, cidr6


def _cidr(text: str, limit: int):
    value = number(text, limit)
    if value is not None and (text == "0" or text[0] != "0"):
        return value
    return None


def macro_tokens(text: str, exp: bool = False) -> list:
    """A macro-string as literal strings and (letter, digits, reverse, delimiters); SPFError if invalid.

    exp=True reads an explanation string: spaces and the letters c, r, t allowed.
    """
    tokens, i, n = [], 0, len(text)
    letters = _EXP_LETTERS if exp else _LETTERS
    while i < n:
        c = text[i]
        if c != "%":
            if not ("!" <= c <= "~" or (exp and c == " ")):
                raise SPFError("permerror", f"character {c!r} not allowed in {text!r}")
            tokens.append(c)
            i += 1
            continue
        nxt = text[i + 1:i + 2]
        if nxt in ("%", "_", "-"):
            tokens.append({"%": "%", "_": " ", "-": "%20"}[nxt])
            i += 2
            continue
        end = text.find("}", i)
        if nxt != "{" or end < 0 or len(text[i + 2:end]) == 0 or text[i + 2].lower() not in letters:
            raise SPFError("permerror", f"bad macro in {text!r}")
        body = text[i + 3:end]
        j = 0
        while j < len(body) and "0" <= body[j] <= "9":
            j += 1
        digits = number(body[:j], 128) if j else 0
        if digits is None:
            raise SPFError("permerror", f"bad macro in {text!r}")
        if j and digits == 0:
            raise SPFError("permerror", f"macro with 0 parts in {text!r}")
        reverse = body[j:j + 1].lower() == "r"
        delimiters = body[j + reverse:]
        if any(d not in _DELIMITERS for d in delimiters):
            raise SPFError("permerror", f"bad macro delimiter in {text!r}")
        tokens.append((text[i + 2], digits, reverse, delimiters))
        i = end + 1
    # join adjacent literal characters
    joined = []
    for token in tokens:
        if isinstance(token, str) and joined and isinstance(joined[-1], str):
            joined[-1] += token
        else:
            joined.append(token)
    return joined


def check_domain_spec(spec: str) -> None:
    """domain-spec = macro-string domain-end; domain-end = "." toplabel ["."] / macro-expand (7.1)."""
    tokens = macro_tokens(spec)
    if not tokens:
        raise SPFError("permerror", "empty domain-spec")
    last = tokens[-1]
    if not isinstance(last, str) or spec.endswith(("%%", "%_", "%-")):
        return
    text = last[:-1] if last.endswith(".") else last
    if "." not in text or not _toplabel(text.rpartition(".")[2]):
        raise SPFError("permerror", f"domain-spec {spec!r} does not end in a valid top label")


def _toplabel(label: str) -> bool:
    if not label or not label.isascii() or not all(c.isalnum() or c == "-" for c in label):
        return False
    if not (label[0].isalnum() and label[-1].isalnum()):
        return False
    return not label.isdigit()


def valid_domain(domain: str) -> bool:
    """A multi-label domain name DNS can carry (4.3): else check_host() is "none"."""
    if not domain or domain.startswith("[") or "." not in domain.rstrip("."):
        return False
    return encode_name(domain) is not None


# The Received-SPF field (9.1) ------------------------------------------------------
_COMMENTS = {
    "pass": "domain of {who} designates {ip} as permitted sender",
    "fail": "domain of {who} does not designate {ip} as permitted sender",
    "softfail": "domain of transitioning {who} does not designate {ip} as permitted sender",
    "neutral": "{ip} is neither permitted nor denied by domain of {who}",
    "none": "domain of {who} does not publish SPF records",
    "temperror": "error in processing during lookup of {who}",
    "permerror": "domain of {who} has an invalid SPF record",
}


def received_spf(result: Result, ip: str, sender: str, helo: str, receiver: str, identity: str) -> list[str]:
    """The Received-SPF value as lines to fold: result (comment), then key=value pairs."""
    from .headers import comment

    who = sender or f"postmaster@{helo}"
    lines = [f"{result.result} " + comment(f"{receiver}: {_COMMENTS[result.result].format(who=who, ip=ip)}")]
    pairs = [("client-ip", ip), ("envelope-from", sender), ("helo", helo), ("receiver", receiver),
             ("identity", identity)]
    if result.mechanism:
        pairs.append(("mechanism", result.mechanism))
    if result.why:
        pairs.append(("problem", result.why))
    lines += [f"{key}={dot_atom_or_quoted(value)};" for key, value in pairs]
    return lines


def dot_atom_or_quoted(value: str) -> str:
    """A Received-SPF value (RFC 7208 9.1): a dot-atom as it is, else a quoted-string; printable ASCII."""
    from .headers import unstructured

    value = unstructured(value, 255)
    if value and all(c.isalnum() or c in "!#$%&'*+-/=?^_`{|}~." for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
