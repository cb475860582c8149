"""DMARC (RFC 7489) without I/O: the From domains, the policy record, alignment, the organizational domain.

The plugin (plugins/dmarc.py) fetches the record and decides. The
organizational domain (publicsuffix.py) is computed only when RFC 7489 needs
it: no record at the From domain, or relaxed alignment of another domain.
"""

POLICIES = ("none", "quarantine", "reject")
MILDER = {"reject": "quarantine", "quarantine": "none", "none": "none"}  # what pct= sampling falls back to


def from_domains(value: str) -> list[str]:
    """The domains of the addresses in a From value (comments and quoted names skipped), lower-case."""
    out, depth, quoted = [], 0, False
    for c in value[:4000]:
        if quoted:
            quoted = c != '"'
        elif c == '"' and not depth:
            quoted = True
        elif c == "(" or c == ")" and depth:
            depth += 1 if c == "(" else -1
        elif not depth:
            out.append(c)
    domains = []
    for part in "".join(out).split(","):
        part = part.rpartition("<")[2].partition(">")[0] if "<" in part else part.rpartition(":")[2]
        if "@" in part:
            domains.append(part.rpartition("@")[2].strip().rstrip(";").strip().lower().rstrip("."))
    return [d for d in domains if d]


def parse_record(text: str) -> dict | None:
    """p, sp, pct, adkim, aspf of a `v=DMARC1` record; None if it has no usable policy."""
    tags: dict[str, str] = {}
    for item in text.split(";"):
        key, _, value = item.partition("=")
        tags.setdefault(key.strip().lower(), value.strip())
    p, sp = tags.get("p", "").lower(), tags.get("sp", "").lower()
    if p not in POLICIES:
        if not tags.get("rua"):
            return None
        p = "none"  # RFC 7489 6.6.3: an invalid p= with a valid rua= is p=none
    pct = tags.get("pct", "100")
    return {"p": p, "sp": sp if sp in POLICIES else "",
            "pct": min(int(pct), 100) if pct.isascii() and pct.isdigit() and len(pct) <= 3 else 100,
            "adkim": tags.get("adkim", "r").lower()[:1], "aspf": tags.get("aspf", "r").lower()[:1]}


def aligned(candidate: str, domain: str, mode: str) -> bool:
    """Is `candidate` (a DKIM d= or SPF domain) aligned with the From domain, strictly (s) or relaxed (r)?"""
    candidate = candidate.lower().rstrip(".")
    if candidate == domain:
        return True
    if mode == "s" or candidate.rpartition(".")[2] != domain.rpartition(".")[2]:
        return False  # an organizational domain is a suffix: different TLDs never share one
    return org_domain(candidate) == org_domain(domain)


def org_domain(domain: str) -> str:
    """The organizational domain (RFC 7489 3.2): the public suffix and one label more."""
    from .publicsuffix import org_domain as lookup

    return lookup(domain)
