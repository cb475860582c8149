"""The bytes the client sent: bounded command lines, and the DATA terminator scanner.

Nothing here touches a file descriptor. Two rules keep it safe:
- A command line is at most `limit` octets; a longer one is discarded as it
  arrives (memory stays bounded) and reported once, when its LF comes.
- DATA ends only at <CRLF>.<CRLF>. A bare LF or bare CR never starts a line,
  so `\\n.\\r\\n`, `\\r.\\r`, `\\n.\\n` and the like are message text, never an end
  (SMTP smuggling). That holds for the first line too: after a DATA command
  that ended in a bare LF, a `.` line is text, not an (empty) end.
  A line that starts with a dot loses that dot (RFC 5321 4.5.2).
The scanner looks for <CRLF>. with one bytes.find; only where there is one
does it look for the terminator with another and unstuff dots with one
bytes.replace, so its cost per octet does not depend on how many lines a
message has (a body of `..` lines costs what one of long lines does).

A BDAT chunk (RFC 3030) is the next `n` octets exactly: no terminator, no
dot-unstuffing, whatever they hold.
"""

LINE_TOO_LONG = object()  # take_line() result: a line over the limit was discarded

_CRLF = b"\r\n"
_CRLF_DOT = b"\r\n."
_CRLF_DOT_CRLF = b"\r\n.\r\n"
_HELD = (b"\r\n.\r", b"\r\n.", b"\r\n", b"\r")  # may become the terminator or a dot line: wait
_DOT = 0x2E
_CR = 0x0D
_LF = 0x0A


class DataStats:
    """What the scanner saw in one message; the session turns it into a verdict."""

    __slots__ = ("size", "bare_lf", "bare_cr", "nul", "long_line", "chunk_bare_lf", "chunk_bare_cr", "_line",
                 "_cr_open")

    def __init__(self) -> None:
        self.size = 0           # octets after dot-unstuffing
        self.bare_lf = False
        self.chunk_bare_lf = False  # the chunk add() saw last has a bare LF (bare_newline normalize mends it)
        self.chunk_bare_cr = False  # ... or a bare CR, counting one that ended the chunk before it (the spool's form)
        self.bare_cr = False
        self.nul = False        # a NUL octet: refused, as a downstream that drops NULs would misread the lines
        self.long_line = False  # a line over the limit given to add(), counting its CR LF
        self._line = 0          # length of the line still open at the end of the last chunk
        self._cr_open = False   # the last chunk ended in CR (BDAT may split a CRLF; DATA never does)

    def add(self, chunk: bytes, line_limit: int = 0) -> None:
        """Account for `chunk`; with `line_limit`, note any line longer than that many octets."""
        if not chunk:
            return
        self.size += len(chunk)
        self.nul = self.nul or b"\0" in chunk
        crlf = chunk.count(_CRLF)
        cr = chunk.count(b"\r")
        self.chunk_bare_cr = False
        if self._cr_open:
            if chunk[0] == _LF:
                crlf += 1
                cr += 1  # the CR held back from the last chunk
            else:
                self.bare_cr = self.chunk_bare_cr = True
        self._cr_open = chunk[-1] == _CR
        if self._cr_open:
            cr -= 1  # decided by the next chunk, or by finish()
        self.chunk_bare_lf = chunk.count(b"\n") != crlf
        if self.chunk_bare_lf:
            self.bare_lf = True
        if cr != crlf:
            self.bare_cr = self.chunk_bare_cr = True
        if line_limit and not self.long_line:
            self._check_lines(chunk, line_limit)

    def _check_lines(self, chunk: bytes, limit: int) -> None:
        # Window by window, never line by line: a message of 1-octet lines costs what one of long lines does.
        n = len(chunk)
        first = chunk.find(b"\n")
        if first < 0 or self._line + first + 1 > limit:
            self._line += n
            self.long_line = self._line > limit or first >= 0
            return
        start = first + 1  # always the start of a line
        while n - start > limit:
            last = chunk.rfind(b"\n", start, start + limit)  # the line at `start` fits iff its LF is in here
            if last < 0:
                self.long_line = True
                return
            start = last + 1
        last = chunk.rfind(b"\n", start)
        self._line = n - (last + 1 if last >= 0 else start)  # the line still open; the tail is within the limit

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

        Octets that may be the start of the terminator or of a dot line (a
        trailing CR, CRLF, CRLF-dot, CRLF-dot-CR) stay buffered until the next
        ones arrive. The work is a few C-level passes, whatever the lines.
        """
        buf = self._buf
        n = len(buf)
        pos = 0
        if self._at_line_start:  # only the first line of the message has no CRLF before it here
            if n == 0 or (buf[0] == _DOT and (n == 1 or (n == 2 and buf[1] == _CR))):
                return b"", False  # ".", ".\r": wait for the next octet
            if buf[0] == _DOT:
                if n >= 3 and buf[1] == _CR and buf[2] == _LF and self._may_end:
                    del buf[:3]
                    self._at_line_start = False
                    return b"", True
                pos = 1  # dot-unstuffing
            self._at_line_start = False
        dot = buf.find(_CRLF_DOT, pos)  # most messages have no dot line: this one pass is then all
        end = -1 if dot < 0 else buf.find(_CRLF_DOT_CRLF, dot)
        if end >= 0:
            stop, ended, consumed = end + 2, True, end + 5
        else:
            stop, ended = n, False
            for held in _HELD:
                if buf.endswith(held) and n - len(held) >= pos:
                    stop = n - len(held)
                    break
            consumed = stop
        view = memoryview(buf)
        data = bytes(view[pos:stop])
        view.release()
        del buf[:consumed]
        if 0 <= dot < stop:
            data = data.replace(_CRLF_DOT, _CRLF)
        return data, ended
