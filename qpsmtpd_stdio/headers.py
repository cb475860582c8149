"""A message's header block: parsed without the `email` package (27 ms of imports per connection).

Fields keep the exact bytes the client sent, so an untouched header goes to the
queue byte for byte. Fields added by plugins are cleaned of CR, LF and other
control characters: a plugin cannot be tricked into injecting a header.
"""

_FOLD = (b" ", b"\t")


class HeaderLimit(Exception):
    """The header block is over max_header_size or max_header_lines."""


class Headers:
    def __init__(self) -> None:
        # (name as sent, raw field bytes without the final line end, lines as CRLF)
        self._fields: list[tuple[str, bytes]] = []

    @classmethod
    def parse(cls, block: bytes) -> "Headers":
        """Fields from `block` (CRLF line ends, no final empty line)."""
        headers = cls()
        for line in block.split(b"\r\n"):
            if line.startswith(_FOLD) and headers._fields:
                name, raw = headers._fields[-1]
                headers._fields[-1] = (name, raw + b"\r\n" + line)
            else:
                name = line.split(b":", 1)[0].decode("utf-8", "replace").strip()
                headers._fields.append((name, line))
        return headers

    def __len__(self) -> int:
        return len(self._fields)

    def __iter__(self):
        for name, raw in self._fields:
            yield name, _value(raw)

    def raw_fields(self) -> list[tuple[str, bytes]]:
        """(name, the whole field as it will be written: `Name: value`, folded lines joined by CRLF)."""
        return list(self._fields)

    def names(self) -> list[str]:
        return [name for name, _ in self._fields]

    def get(self, name: str) -> str | None:
        """The first value of `name` (unfolded, trimmed), or None."""
        values = self.get_all(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [_value(raw) for n, raw in self._fields if n.lower() == key]

    def count(self, name: str) -> int:
        key = name.lower()
        return sum(1 for n, _ in self._fields if n.lower() == key)

    def add(self, name: str, value: str, prepend: bool = False) -> None:
        """Add `name: value`; by default after the others, with prepend=True on top (trace fields)."""
        field = (clean(name).replace(":", ""), f"{clean(name).replace(':', '')}: {clean(value)}".encode("utf-8"))
        if prepend:
            self._fields.insert(0, field)
        else:
            self._fields.append(field)

    def add_folded(self, name: str, lines: list[str], prepend: bool = False) -> None:
        """Add a field written over several lines (each after the first is indented with a tab)."""
        text = "\r\n\t".join(clean(line) for line in lines)
        field = (name, f"{clean(name)}: {text}".encode("utf-8"))
        if prepend:
            self._fields.insert(0, field)
        else:
            self._fields.append(field)

    def insert_raw(self, index: int, name: str, field: bytes) -> None:
        """Put a whole field, exactly as given (`Name: value`, folded with CRLF + space or tab), at position
        `index` (0 is the top; past the end appends). ValueError if it is not one well-formed field."""
        check_field(field)
        self._fields.insert(max(index, 0), (name, field))

    def change_raw(self, name: str, nth: int, field: bytes | None) -> None:
        """Replace the nth (1-based) `name` field by `field` exactly, or remove it (None); past the last, append."""
        key = name.lower()
        where = [i for i, (n, _) in enumerate(self._fields) if n.lower() == key]
        if field is None:
            if 0 < nth <= len(where):
                del self._fields[where[nth - 1]]
            return
        check_field(field)
        if 0 < nth <= len(where):
            self._fields[where[nth - 1]] = (name, field)
        else:
            self._fields.append((name, field))

    def delete(self, name: str, nth: int = 0) -> int:
        """Remove every `name` field (nth=0), or only the nth (1 is the first, -1 the last); how many went."""
        key = name.lower()
        if nth:
            where = [i for i, (n, _) in enumerate(self._fields) if n.lower() == key]
            if not -len(where) <= (nth - 1 if nth > 0 else nth) < len(where):
                return 0
            del self._fields[where[nth - 1 if nth > 0 else nth]]
            return 1
        before = len(self._fields)
        self._fields = [(n, raw) for n, raw in self._fields if n.lower() != key]
        return before - len(self._fields)

    def replace(self, name: str, value: str) -> None:
        self.delete(name)
        self.add(name, value)

    def as_bytes(self, eol: bytes = b"\r\n") -> bytes:
        """The header block with `eol` line ends, ending with the empty line that separates the body."""
        out = [raw.replace(b"\r\n", eol) + eol for _, raw in self._fields]
        out.append(eol)
        return b"".join(out)


def check_field(field: bytes) -> None:
    """A field from outside, kept byte for byte: ValueError unless it is one field (`Name:` then a value whose
    every further line starts with a space or tab, lines ending CRLF) without NUL or other controls."""
    name, colon, _ = field.partition(b":")
    if not colon or not name or any(c < 33 or c > 126 for c in name):
        raise ValueError("not a header field name")
    for number, line in enumerate(field.split(b"\r\n")):
        if number and not line[:1] in (b" ", b"\t"):
            raise ValueError("a line of the field that is not a continuation")
        if any(c < 32 and c != 9 or c == 127 for c in line):
            raise ValueError("a control character in the field")


def unstructured(text: str, limit: int = 900) -> str:
    """Text from outside (a filter's verdict, a virus name) as RFC 5322 unstructured text: printable ASCII, bounded.

    Controls (CR, LF, NUL...) become spaces; any other character that is not
    ASCII becomes "?": plugin-written fields stay 7-bit whatever they quote.
    """
    text = text[:limit]
    if text.isascii() and text.isprintable():
        return text.strip()
    return "".join(c if " " <= c <= "~" else "?" if c.isprintable() else " " for c in text).strip()


def comment(text: str, limit: int = 255) -> str:
    """`text` as one RFC 5322 comment, parentheses included: printable ASCII, with `\\`, `(` and `)` quoted."""
    return "(" + unstructured(text, limit).replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def clean(text: str) -> str:
    """One line of header text: CR, LF and other controls become spaces."""
    if text.isprintable():
        return text.strip()
    return "".join(c if c.isprintable() else " " for c in text).strip()


def _value(raw: bytes) -> str:
    value = raw.split(b":", 1)[1] if b":" in raw else b""
    return value.replace(b"\r\n", b"").decode("utf-8", "replace").strip()


def split_header_block(head: bytes, max_size: int, max_lines: int) -> tuple[bytes, int]:
    """Find the end of the header block at the start of a message.

    `head` is the first max_size+2 octets of the message. Returns (block
    without its final CRLF, offset where the body starts).
    The block ends at the first empty line, or before the first line that is
    not a header field (a body with no separating empty line).
    Raises HeaderLimit past max_lines.
    """
    pos = 0
    lines = 0
    while True:
        end = head.find(b"\r\n", pos)
        if end < 0:
            if pos < len(head) and len(head) > max_size:
                raise HeaderLimit("header block too large")
            return head[:max(pos - 2, 0)], pos
        line = head[pos:end]
        if not line:
            return head[:max(pos - 2, 0)], end + 2
        is_field = line.startswith(_FOLD) and pos > 0 or _is_field_start(line)
        if not is_field:
            return head[:max(pos - 2, 0)], pos
        lines += 1
        if lines > max_lines:
            raise HeaderLimit("too many header lines")
        if end + 2 > max_size:
            raise HeaderLimit("header block too large")
        pos = end + 2


def _is_field_start(line: bytes) -> bool:
    colon = line.find(b":")
    if colon <= 0:
        return False
    name = line[:colon]
    return all(33 <= c <= 126 for c in name)
