"""The bytes the client sent: bounded command lines, and the DATA terminator scanner.

Nothing here touches a file descriptor. Two rules keep it safe:
- A command line is at most `limit` octets; a longer one is discarded as it
  arrives (memory stays bounded) and reported once, when its LF comes.
- DATA ends only at <CRLF>.<CRLF>. A bare LF or bare CR never starts a line,
  so `\\n.\\r\\n`, `\\r.\\r`, `\\n.\\n` and the like are message text, never an end
  (SMTP smuggling). That holds for the first line too: after a DATA command
  that ended in a bare LF, a `.` line is text, not an (empty) end.
  A line that starts with a dot loses that dot (RFC 5321 4.5.2).
The scanner looks only for b"\\r\\n." with bytes.find, so its cost per octet
does not depend on how many lines a message has.

A BDAT chunk (RFC 3030) is the next `n` octets exactly: no terminator, no
dot-unstuffing, whatever they hold.
"""

from __future__ import annotations

LINE_TOO_LONG = object()  # take_line() result: a line over the limit was discarded

_CRLF = b"\r\n"
_CRLF_DOT = b"\r\n."
_DOT = 0x2E
_CR = 0x0D
_LF = 0x0A


class DataStats:
    """What the scanner saw in one message; the session turns it into a verdict."""

    __slots__ = ("size", "bare_lf", "bare_cr", "nul", "longest_line", "_line", "_cr_open")

    def __init__(self) -> None:
        self.size = 0           # octets after dot-unstuffing
        self.bare_lf = False
        self.bare_cr = False
        self.nul = False        # a NUL octet: refused, as a downstream that drops NULs would misread the lines
        self.longest_line = 0   # octets, counting the line's LF (and CR)
        self._line = 0          # length of the line still open at the end of the last chunk
        self._cr_open = False   # the last chunk ended in CR (BDAT may split a CRLF; DATA never does)

    def add(self, chunk: bytes, check_lines: bool) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        self.nul = self.nul or b"\0" in chunk
        crlf = chunk.count(_CRLF)
        cr = chunk.count(b"\r")
        if self._cr_open:
            if chunk[0] == _LF:
                crlf += 1
                cr += 1  # the CR held back from the last chunk
            else:
                self.bare_cr = True
        self._cr_open = chunk[-1] == _CR
        if self._cr_open:
            cr -= 1  # decided by the next chunk, or by finish()
        if chunk.count(b"\n") != crlf:
            self.bare_lf = True
        if cr != crlf:
            self.bare_cr = True
        if not check_lines:
            return
        if chunk.find(b"\n") < 0:
            self._line += len(chunk)
            self.longest_line = max(self.longest_line, self._line)
            return
        parts = chunk.split(b"\n")
        first = self._line + len(parts[0]) + 1
        middle = max(map(len, parts[1:-1]), default=-1) + 1
        self.longest_line = max(self.longest_line, first, middle)
        self._line = len(parts[-1])

    def finish(self) -> None:
        """The message is complete: a CR still waiting for its LF is a bare CR."""
        if self._cr_open:
            self.bare_cr = True
            self._cr_open = False


class ReceiveBuffer:
    """Bytes received and not yet consumed."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False   # inside an over-long command line
        self._too_long = False     # an over-long line ended; report it next
        self._at_line_start = True  # DATA: the next octet begins a line
        self._may_end = True        # DATA: that line follows a CRLF, so "." there is the end
        self._chunk_left = 0        # BDAT: octets of the chunk not yet handed out

    def __len__(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        if self._discarding:
            # Drop the rest of an over-long line as it arrives.
            i = data.find(b"\n")
            if i < 0:
                return
            self._discarding = False
            self._too_long = True
            data = data[i + 1:]
        self._buf += data

    def peek(self, n: int) -> bytes:
        """The first `n` octets buffered (fewer if fewer arrived), left in place."""
        return bytes(self._buf[:n])

    def clear(self) -> None:
        """Forget everything buffered (after STARTTLS, per RFC 3207)."""
        self._buf.clear()
        self._discarding = self._too_long = False

    def take_line(self, limit: int) -> bytes | object | None:
        """One command line with its LF, LINE_TOO_LONG, or None if more bytes are needed."""
        buf = self._buf
        if self._too_long:
            self._too_long = False
            return LINE_TOO_LONG
        i = buf.find(b"\n", 0, limit)
        if i >= 0:
            line = bytes(buf[:i + 1])
            del buf[:i + 1]
            return line
        if len(buf) >= limit:
            j = buf.find(b"\n")
            if j >= 0:
                del buf[:j + 1]
                return LINE_TOO_LONG
            buf.clear()
            self._discarding = True
        return None

    def start_data(self, after_crlf: bool = True) -> None:
        """DATA was accepted; `after_crlf` is false if its command line ended in a bare LF."""
        self._at_line_start = True
        self._may_end = after_crlf

    def start_chunk(self, size: int) -> None:
        """A BDAT command announced `size` octets; they follow its line at once."""
        self._chunk_left = size

    def take_chunk(self) -> tuple[bytes, bool]:
        """Chunk octets available now (never past the chunk's end), and whether the chunk is complete."""
        buf = self._buf
        n = min(len(buf), self._chunk_left)
        data = bytes(buf[:n])
        del buf[:n]
        self._chunk_left -= n
        return data, self._chunk_left == 0

    def take_data(self) -> tuple[bytes, bool]:
        """Dot-unstuffed message bytes available now, and whether <CRLF>.<CRLF> was reached.

        A trailing CR, or a line-start dot whose meaning depends on the next
        octets, stays buffered until they arrive.
        """
        buf = self._buf
        n = len(buf)
        pos = 0
        out = []
        ended = False
        while pos < n:
            if self._at_line_start:
                if buf[pos] == _DOT:
                    rest = n - pos
                    if rest >= 3 and buf[pos + 1] == _CR and buf[pos + 2] == _LF and self._may_end:
                        pos += 3
                        ended = True
                        break
                    if rest == 1 or (rest == 2 and buf[pos + 1] == _CR):
                        break  # ".", ".\r": wait for the next octet
                    pos += 1  # dot-unstuffing
                self._at_line_start = False
                self._may_end = True
                continue
            i = buf.find(_CRLF_DOT, pos)
            if i >= 0:
                out.append(buf[pos:i + 2])
                pos = i + 2
                self._at_line_start = True
                continue
            if buf.endswith(_CRLF):
                out.append(buf[pos:n])
                pos = n
                self._at_line_start = True
            elif buf[n - 1] == _CR:
                out.append(buf[pos:n - 1])
                pos = n - 1
                break
            else:
                out.append(buf[pos:n])
                pos = n
        del buf[:pos]
        return b"".join(out), ended
