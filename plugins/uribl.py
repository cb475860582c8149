"""uribl - look up the domains and addresses of the links in a message in URI block lists (SURBL, URIBL...)

Arguments (qpsmtpd's): `uribl [action add-header|deny|denysoft|log] [scan-headers 1] [timeout N]`

  action        what a listed link does (default add-header: an
                `X-URIBL-Match: NAME in ZONE: REASON` field; deny: 554;
                denysoft: 451; log: only the log line)
  scan-headers  1: the header's links count too (default: only the body's)
  timeout       seconds each DNS query waits (default: dns_timeout)

Config files:
  uribl_zones              `ZONE [MASK[,MASK...]] [ACTION]` lines. An answer
                           (an A record in 127.0.0.0/8) lists a name when it
                           and the masks share a bit (default: every list of
                           a combined zone); ACTION overrides `action`.
  uribl_whitelist_domains  domains never looked up (your own, big sites)

The body is scanned as qpsmtpd's plugin does: quoted-printable soft line
breaks are joined, `=XX`, `%XX` and `&#NN;` decoded; then links by
address (`http://192.0.2.7/`, `http://3221225991/`, octal and hex octets),
the host of every link, and other host names that end in one of the
classic top-level domains (as qpsmtpd). A host name is looked
up with each parent down to its registered domain (two labels, three under
the two-level ccTLDs such as co.uk). The work is bounded on any body: at
most MAX_SCAN octets are read, lines are cut at MAX_LINE characters, and
at most MAX_NAMES names are looked up, all in parallel, within the
connection's dns_budget. Relay clients and whitelisted senders are not checked.

Example config/plugins line (after the other data_post checks):

    uribl action deny

Imports at load: qpsmtpd_stdio.dns, qpsmtpd_stdio.dnswire.
"""

from qpsmtpd_stdio import DECLINED, DENY, DENYSOFT, LOGINFO, LOGWARN, dns

MAX_SCAN = 1 << 20   # octets of a message read for links
MAX_LINE = 4096      # characters of a line searched
MAX_NAMES = 40       # names looked up per message
ACTIONS = ("add-header", "deny", "denysoft", "log")
TWO_LEVEL = frozenset("ac ae uk ai ar at au az bb bh bm br bs ca ck cn co cr cu cy do et ge hk id il in jp kr "
                      "kw lv lb mo mt mx my ng nz om pe ph pk pl pr pt py ru sa sg sv th tr tw ua ve vn za".split())


def register(plugin, *args):
    opts = plugin.options({"action": "add-header"})
    plugin.action = opts["action"] if opts["action"] in ACTIONS else "add-header"
    plugin.headers = opts.get("scan-headers", opts.get("check-headers", "0")) not in ("0", "")
    plugin.zones = {}
    for line in plugin.config("uribl_zones"):
        words = line.split()
        mask = 0
        for part in (words[1].split(",") if len(words) > 1 else ["-1"]):
            value = int(part) if part.lstrip("-").isdigit() and part.isascii() and len(part) < 12 else None
            if value is None:
                raise ValueError(f"uribl_zones: bad mask {part!r} for {words[0]}")
            mask |= value if value >= 0 else 0x00FFFFFF
        action = words[2] if len(words) > 2 else plugin.action
        if action not in ACTIONS:
            raise ValueError(f"uribl_zones: unknown action {action!r} for {words[0]}")
        plugin.zones[words[0].lower().strip(".")] = (mask, action)
    plugin.skip = {d.split()[0].lower() for d in plugin.config("uribl_whitelist_domains")}


def hook_data_post(plugin, txn):
    if not plugin.zones or plugin.is_immune(txn):
        return DECLINED
    names = links(txn, plugin.headers, plugin.skip)
    if not names:
        plugin.log(LOGINFO, "pass, no links found")
        return DECLINED
    resolver = dns.resolver(plugin)
    asked = [(name, zone, resolver.query(f"{name}.{zone}", "A")) for name in names for zone in plugin.zones]
    found = []
    for name, zone, query in asked:
        mask, action = plugin.zones[zone]
        hits = [a for a in query.answer().records if a.startswith("127.") and not a.startswith("127.255.255.")
                and to_int(a) & mask]
        if hits:
            reasons = resolver.lookup(f"{name}.{zone}", "TXT").records
            found.append((f"{name} in {zone}: {dns.printable(reasons[0] if reasons else hits[0], 200)}", action))
    plugin.log(LOGINFO, f"{len(names)} names looked up in {len(plugin.zones)} zones, {len(found)} listed")
    for text, action in found:
        plugin.log(LOGWARN, text)
        if action == "deny":
            return DENY, f"5.7.1 {text}"
        if action == "denysoft":
            return DENYSOFT, f"4.7.1 {text}"
        if action == "add-header":
            txn.header.add("X-URIBL-Match", text)
    return DECLINED


def to_int(address):
    a, b, c, d = (int(x) for x in address.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def links(txn, with_headers, skip):
    """The names to look up for the links in the message, at most MAX_NAMES, in the order met."""
    import re  # only for a message that gets here: it costs milliseconds to import

    names = {}
    source = txn.body_stream()
    text = source.read(MAX_SCAN).decode("latin-1")
    if with_headers:
        text = "\n".join(f"{name}: {value}" for name, value in txn.header) + "\n" + text
    text = re.sub(r"=\r?\n", "", text)  # quoted-printable soft line breaks
    for line in text.splitlines():
        line = line[:MAX_LINE]
        line = re.sub(r"[=%]([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), line)
        line = re.sub(r"&#(\d{2,3});?", lambda m: chr(int(m.group(1)) % 256), line).replace(";", "")
        for ip in _addresses(re, line):
            names.setdefault(".".join(reversed(ip.split("."))), None)
        # A link's host with any top-level domain (spam loves the new ones); a bare name with a classic one.
        for pattern in (URL_HOST, HOST_PATTERN):
            for match in re.finditer(pattern, line, re.IGNORECASE):
                for name in _parents(match.group(1).lower(), skip):
                    names.setdefault(name, None)
        if len(names) >= MAX_NAMES:
            break
    return list(names)[:MAX_NAMES]


URL_HOST = r"\w{3,16}:/+(?:[^\s/@]+@)?([a-zA-Z0-9][a-zA-Z0-9\-.]*\.[a-zA-Z]{2,63})(?![\w.-])"
HOST_PATTERN = (r"((?:www\.)?[a-zA-Z0-9][a-zA-Z0-9\-.]+\.(?:aero|arpa|asia|biz|cat|com|coop|edu|gov|info|int|jobs|"
                r"mil|mobi|museum|name|net|org|pro|tel|travel|[a-zA-Z]{2}))(?!\w)")


def _addresses(re, line):
    """IPv4 addresses of links written as an address: dotted (decimal, octal or hex octets) or one integer."""
    for match in re.finditer(r"\w{3,16}:/+(?:\S+@)?(\d{7,10})(?::\d*)?(?:[/?\s]|$)", line):
        value = int(match.group(1))
        if value < 1 << 32:
            yield ".".join(str(value >> shift & 0xFF) for shift in (24, 16, 8, 0))
    octet = r"(\d{1,4}|0[xX][0-9A-Fa-f]{1,2})"
    for match in re.finditer(r"\w{3,16}:/+(?:\S+@)?" + r"\.".join([octet] * 4), line):
        parts = [_octet(p) for p in match.groups()]
        if all(p is not None and p < 256 for p in parts):
            yield ".".join(map(str, parts))


def _octet(text):
    if text[:2].lower() == "0x":
        return int(text, 16)
    if len(text) > 1 and text.startswith("0"):
        return int(text, 8) if set(text) <= set("01234567") else None
    return int(text)


def _parents(host, skip):
    labels = host.strip(".").split(".")
    cutoff = 3 if labels[-1] in TWO_LEVEL else 2
    if ".".join(labels[-cutoff:]) in skip or len(labels) > 10:
        return []
    return [".".join(labels[i:]) for i in range(0, len(labels) - cutoff + 1)]
