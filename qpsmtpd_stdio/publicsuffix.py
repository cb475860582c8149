"""The organizational domain (RFC 7489 3.2) from the public suffix list, read through a compact index.

The data is the publicsuffixlist package's `public_suffix_list.dat`; the
matching is that package's (`PublicSuffixList().privatesuffix`, private
section included, IDN rules in both forms), checked against it by
tests/unit/test_publicsuffix.py. Importing publicsuffixlist and parsing the
whole list cost about 20 ms; a session needs the rules of one TLD.

The index is one file per list version (named by the list's size and
mtime) in this package's `__pycache__`: a table of TLD -> (offset, length)
and then each TLD's rules. A lookup reads the table and one TLD's rules.
`in.qpsmtpd --check` run as root writes it, and so does the first session
that may; where none can, each session builds it in memory (about 15 ms).
"""

import marshal
import os
import sys

MAGIC = b"qpsmtpd-stdio psl 1\n"
INDEX_DIR = os.path.join(os.path.dirname(__file__), "__pycache__")
_loaded: dict[str, tuple[dict, bytes | None, int]] = {}  # index path -> (table, the blob if built here, blob offset)


def list_path() -> str | None:
    """publicsuffixlist's data file, found on sys.path without importing the package."""
    for entry in sys.path:
        path = os.path.join(entry or ".", "publicsuffixlist", "public_suffix_list.dat")
        if os.path.isfile(path):
            return path
    return None


def index_path(source: str) -> str:
    st = os.stat(source)
    return os.path.join(INDEX_DIR, f"psl-{st.st_size}-{st.st_mtime_ns}.idx")


def build(source: str) -> tuple[dict[str, tuple[int, int]], bytes]:
    """The index of the list at `source`: (table, blob), each TLD's rules one per line in the blob."""
    by_tld: dict[str, list[str]] = {}
    with open(source, encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            rule = line.lower().split(" ")[0].rstrip()
            if not rule or rule.startswith("//"):
                continue
            forms = [rule]
            try:  # as publicsuffixlist: the punycode form of an IDN rule too
                bare = rule.lstrip("!").encode("idna").decode("ascii")
                forms.append("!" + bare if rule[0] == "!" else bare)
            except UnicodeError:
                pass
            for form in forms:
                by_tld.setdefault(form.rpartition(".")[2], []).append(form)
    table, parts, offset = {}, [], 0
    for tld, rules in by_tld.items():
        data = "\n".join(dict.fromkeys(rules)).encode("utf-8", "surrogateescape")
        table[tld] = (offset, len(data))
        parts.append(data)
        offset += len(data)
    return table, b"".join(parts)


def save(path: str, table: dict, blob: bytes) -> None:
    head = marshal.dumps(table)
    tmp = f"{path}.{os.getpid()}.tmp"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(tmp, "wb") as fh:
        fh.write(MAGIC + len(head).to_bytes(4, "big") + head + blob)
    os.replace(tmp, path)
    for name in os.listdir(os.path.dirname(path)):  # the index of a list no longer installed
        if name.startswith("psl-") and name.endswith(".idx") and name != os.path.basename(path):
            try:
                os.unlink(os.path.join(os.path.dirname(path), name))
            except OSError:
                pass


def prepare() -> tuple[str, str] | None:
    """Write the index of the installed list if it is missing: (path, "current"|"written"|why not); None: no list."""
    source = list_path()
    if source is None:
        return None
    path = index_path(source)
    if os.path.isfile(path):
        return path, "current"
    try:
        save(path, *build(source))
    except OSError as exc:
        return path, f"cannot be written ({exc.strerror or exc})"
    return path, "written"


def _rules(tld: str) -> set[str] | None:
    source = list_path()
    if source is None:
        return None
    path = index_path(source)
    entry = _loaded.get(path)
    if entry is None:
        try:
            with open(path, "rb") as fh:
                if fh.read(len(MAGIC)) != MAGIC:
                    raise ValueError(path)
                size = int.from_bytes(fh.read(4), "big")
                table = marshal.loads(fh.read(size))
            entry = (table, None, len(MAGIC) + 4 + size)
        except (OSError, ValueError, EOFError, TypeError):
            table, blob = build(source)
            try:
                save(path, table, blob)
            except OSError:
                pass
            entry = (table, blob, 0)
        _loaded[path] = entry
    table, blob, start = entry
    if tld not in table:
        return set()
    offset, length = table[tld]
    if blob is None:
        with open(path, "rb") as fh:
            fh.seek(start + offset)
            data = fh.read(length)
    else:
        data = blob[offset:offset + length]
    return set(data.decode("utf-8", "surrogateescape").split("\n"))


def _count_public(labels: list[str], rules: set[str]) -> int:
    """How many labels of the domain are public (publicsuffixlist's _countpublic, accept_unknown)."""
    n = len(labels)
    if n == 1:
        return 1
    for i in range(n):
        depth = n - i
        name = ".".join(labels[i:])
        if "!" + name in rules:
            return depth - 1
        if "*." + name in rules:
            return depth + 1 if i > 0 else depth
        if name in rules:
            return depth
    return 1


def private_suffix(domain: str) -> str | None:
    """The public suffix and one label more; None when the domain is a public suffix or not a domain."""
    domain = domain[:-1] if domain.endswith(".") else domain
    labels = domain.lower().split(".")
    if "" in labels:
        return None
    rules = _rules(labels[-1])
    if rules is None:
        raise ModuleNotFoundError("publicsuffixlist is not installed (pip install 'qpsmtpd-stdio[dmarc]')")
    public = _count_public(labels, rules)
    return ".".join(labels[-(public + 1):]) if len(labels) > public else None


def org_domain(domain: str) -> str:
    """The organizational domain (RFC 7489 3.2); the domain itself when it is a public suffix."""
    return private_suffix(domain) or domain
