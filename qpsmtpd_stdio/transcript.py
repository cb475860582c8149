"""A session transcript for debugging a live site: every line in and out, with a timestamp.

Turned on by `in.qpsmtpd --transcript FILE`, or by the config file
`transcript` holding one path (relative: to the config dir). Lines look like

    2026-11-24T23:38:28.123456+0000 4711 * connect from unknown[192.0.2.10]:40000 to 192.0.2.1:25
    2026-11-24T23:38:28.131207+0000 4711 > 220 mx.example.test ESMTP qpsmtpd-stdio 0.1.0 ready; ...
    2026-11-24T23:38:28.131950+0000 4711 < EHLO client.example

`<` is the client, `>` the server, `*` a note. The PID tells concurrent
sessions apart; the file is opened with O_APPEND and each batch of lines is
one write(), so sessions never overwrite each other.

Lines are shown exactly: a CRLF line end is left out, a bare LF shows as
`\\n` at the end, other control octets as `\\r`, `\\xNN`, a backslash as
`\\\\`, and a line the client never finished ends in ` [...]`. That makes
smuggling attempts (`\\n.\\r\\n`) visible.

AUTH is masked: from a client's `AUTH` command (its initial response shown
as `***`), every line the client sends is `***` until the server's final
reply to it (235, 535, or any code but 334). Message content is recorded
as it is: it holds personal data, so keep transcripts short-lived.
"""

import os
import time

MASK = "***"
MAX_PARTIAL = 8192  # octets of an unfinished client line kept before it is written out as it is

_ESCAPES = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", "\t": "\\t"}


class Transcript:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._partial = b""
        self._auth = False   # between the client's AUTH and the server's final reply to it
        self._data = False   # between 354 and the client's "."

    @classmethod
    def open(cls, path: str, connection, log) -> "Transcript | None":
        """The transcript appending to `path`, or None (logged) if it cannot be opened: mail goes on."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            log(4, f"transcript {path}: {exc.strerror}; no transcript for this session")
            return None
        transcript = cls(fd)
        transcript._write("*", [f"connect from {connection.remote_label} to {connection.local_ip}:{connection.local_port}"])
        return transcript

    def note(self, text: str) -> None:
        """A `*` line: what the session learnt, e.g. the real client behind a proxy."""
        self._write("*", [text])

    def received(self, data: bytes) -> None:
        """Octets from the client; b"" is the end of its input."""
        if not data:
            lines = [self._client_line(self._partial)] if self._partial else []
            self._partial = b""
            self._write("<", lines)
            self._write("*", ["client closed its side"])
            return
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        lines = [self._client_line(chunk + b"\n") for chunk in chunks]
        if len(self._partial) > MAX_PARTIAL:
            lines.append(self._client_line(self._partial))
            self._partial = b""
        self._write("<", lines)

    def sent(self, data: bytes) -> None:
        """Octets to the client: whole reply lines."""
        lines = []
        for line in data.split(b"\r\n")[:-1] if data.endswith(b"\r\n") else data.split(b"\r\n"):
            if line[3:4] != b"-":  # the last line of a reply
                code = line[:3]
                if code == b"354":
                    self._data = True
                if self._auth and code != b"334":
                    self._auth = False
            lines.append(render(line + b"\r\n"))
        self._write(">", lines)

    def close(self) -> None:
        if self._partial:
            self._write("<", [self._client_line(self._partial)])
            self._partial = b""
        self._write("*", ["end of session"])
        try:
            os.close(self.fd)
        except OSError:
            pass

    def _client_line(self, line: bytes) -> str:
        if self._data:
            if line in (b".\r\n", b".\n"):
                self._data = False
            return render(line)
        if self._auth:
            return MASK
        verb = line[:5].upper()
        if verb[:4] == b"AUTH" and verb[4:5] in (b" ", b"\r", b"\n", b""):
            self._auth = True
            words = line.split(None, 2)
            return render(b" ".join(words[:2]) + b"\r\n") + (" " + MASK if len(words) > 2 else "")
        return render(line)

    def _write(self, direction: str, lines: list[str]) -> None:
        if not lines:
            return
        now = time.time()
        local = time.localtime(now)
        stamp = f"{time.strftime('%Y-%m-%dT%H:%M:%S', local)}.{int(now % 1 * 1e6):06d}{time.strftime('%z', local)}"
        prefix = f"{stamp} {os.getpid()} {direction} "
        text = "".join(prefix + line + "\n" for line in lines)
        try:
            os.write(self.fd, text.encode("utf-8", "backslashreplace"))
        except OSError:
            pass  # a full disk must not end the session


def render(line: bytes) -> str:
    """One line as text: CRLF left out, anything else that is not printable escaped."""
    if line.endswith(b"\r\n"):
        body, end = line[:-2], ""
    elif line.endswith(b"\n"):
        body, end = line[:-1], "\\n"
    else:
        body, end = line, " [...]"
    text = body.decode("utf-8", "surrogateescape")
    if text.isprintable() and "\\" not in text:
        return text + end
    out = []
    for c in text:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif "\udc80" <= c <= "\udcff":
            out.append(f"\\x{ord(c) - 0xdc00:02x}")
        elif not c.isprintable():
            out.append(f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return "".join(out) + end
