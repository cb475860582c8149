"""The SMTP server protocol as a state machine that never touches a file descriptor.

Theory of operation (after h11): the caller feeds received bytes in with
`receive_data()`, takes events out with `next_event()`, and turns each reply
into bytes with `send()`. Every event that needs an answer (a command, a bad
line, the end of a message) must be answered with exactly one `send()` before
the next event is taken; the reply's code decides the next state, from the
TRANSITIONS table below. Everything that decides what is legal in which state
lives in this file. Policy (who may relay, what a plugin says) does not: that
is the session's job.

Two replies change more than the state. A 220 to STARTTLS drops every octet
received so far, so nothing sent in plaintext can pose as part of the TLS
session (CVE-2011-0411); the caller then starts TLS and EHLO is needed again.
A 334 to AUTH starts a SASL exchange (RFC 4954): each following line is an
AuthResponse, not a command, until a reply other than 334 ends it.

BDAT (RFC 3030) is the one command acted on before its reply: its chunk
follows the line at once, so a well-formed `BDAT n [LAST]` line switches to
the BDAT state as it is read, in every state (REJECTED too). A legal one gives
ChunkStart, MessageData with exactly n octets, then EndOfChunk to answer; an
illegal one has its octets read and dropped, then gives OutOfSequence. Either
way the octets are never taken for commands. A BDAT line whose size cannot be
read gives BadChunk (501): its octets cannot be skipped, and the transaction
is over.
"""

from .digits import number
from .receivebuffer import LINE_TOO_LONG, DataStats, ReceiveBuffer

# States.
CONNECTED = "CONNECTED"  # before the greeting
GREETED = "GREETED"      # 220 sent; no HELO/EHLO yet
READY = "READY"          # HELO/EHLO accepted; no mail transaction
MAIL = "MAIL"            # sender accepted
RCPT = "RCPT"            # at least one recipient accepted
DATA = "DATA"            # 354 sent; the message is arriving
BDAT = "BDAT"            # a BDAT chunk is arriving
CHUNKS = "CHUNKS"        # BDAT chunks accepted, no LAST yet
SASL = "SASL"            # inside an AUTH exchange: lines are AuthResponse events
REJECTED = "REJECTED"    # 554 greeting: only QUIT is served (RFC 5321 3.1)
CLOSED = "CLOSED"        # 221 or 421 sent, or the client went away

# BDAT enters BDAT when its line is read; the reply to its EndOfChunk leaves it:
# (reply was 2xx, LAST) -> state. A refused chunk ends the transaction (RFC 3030 2:
# the client sends no more chunks; those already pipelined are read and refused).
AFTER_CHUNK = {(True, False): CHUNKS, (True, True): READY, (False, False): READY, (False, True): READY}

# Commands this table knows. Any other verb is passed to the session as a
# Command in every state but REJECTED (plugins may implement it).
_ANYTIME = {"HELO": READY, "EHLO": READY, "NOOP": None, "VRFY": None, "HELP": None, "QUIT": CLOSED}

# state -> {verb: state after a 2xx/3xx reply (None: unchanged)}
TRANSITIONS: dict[str, dict[str, str | None]] = {
    # XCLIENT (Postfix) answered 220 starts over as a new connection: HELO/EHLO again.
    GREETED: {**_ANYTIME, "RSET": GREETED, "STARTTLS": GREETED, "XCLIENT": GREETED},
    READY: {**_ANYTIME, "RSET": READY, "MAIL": MAIL, "STARTTLS": GREETED, "AUTH": READY, "XCLIENT": GREETED},
    MAIL: {**_ANYTIME, "RSET": READY, "RCPT": RCPT},
    RCPT: {**_ANYTIME, "RSET": READY, "RCPT": RCPT, "DATA": DATA, "BDAT": BDAT},
    # RFC 3030 2: no DATA (nor RCPT) once a chunk is in.
    CHUNKS: {**_ANYTIME, "RSET": READY, "BDAT": BDAT},
    REJECTED: {"QUIT": CLOSED},
}
# Replies that move a command elsewhere than TRANSITIONS says: (verb, code) -> state.
# 334 to AUTH starts a SASL exchange (RFC 4954 4); 554 to XCLIENT is the new client's connect hook refusing
# it, as a 554 greeting does.
BY_REPLY = {("AUTH", 334): SASL, ("XCLIENT", 554): REJECTED}
# The greeting: 220 opens the session, 554 serves only QUIT (RFC 5321 3.1), anything else ends it.
AFTER_GREETING = {220: GREETED, 554: REJECTED}
KNOWN_VERBS = frozenset(("HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "VRFY", "HELP", "QUIT",
                         "STARTTLS", "AUTH", "BDAT", "XCLIENT"))

# Replies for a known verb out of sequence: (state, verb) -> (code, enhanced, text)
_SEQUENCE_ERRORS = {
    (GREETED, "MAIL"): (503, "5.5.1", "please say hello first ..."),
    (GREETED, "RCPT"): (503, "5.5.1", "Use MAIL before RCPT"),
    (GREETED, "DATA"): (503, "5.5.1", "MAIL first"),
    (READY, "RCPT"): (503, "5.5.1", "Use MAIL before RCPT"),
    (READY, "DATA"): (503, "5.5.1", "MAIL first"),
    (MAIL, "MAIL"): (503, "5.5.1", "nested MAIL command"),
    (MAIL, "DATA"): (503, "5.5.1", "RCPT first"),
    (RCPT, "MAIL"): (503, "5.5.1", "nested MAIL command"),
    (GREETED, "AUTH"): (503, "5.5.1", "please say EHLO first ..."),
    (MAIL, "AUTH"): (503, "5.5.1", "AUTH is not permitted during a mail transaction"),
    (RCPT, "AUTH"): (503, "5.5.1", "AUTH is not permitted during a mail transaction"),
    (MAIL, "STARTTLS"): (503, "5.5.1", "STARTTLS is not permitted during a mail transaction"),
    (RCPT, "STARTTLS"): (503, "5.5.1", "STARTTLS is not permitted during a mail transaction"),
    (GREETED, "BDAT"): (503, "5.5.1", "MAIL first"),
    (READY, "BDAT"): (503, "5.5.1", "MAIL first"),
    (MAIL, "BDAT"): (503, "5.5.1", "RCPT first"),
    (CHUNKS, "MAIL"): (503, "5.5.1", "nested MAIL command"),
    (CHUNKS, "RCPT"): (503, "5.5.1", "RCPT is not permitted after BDAT"),
    (CHUNKS, "DATA"): (503, "5.5.1", "DATA is not permitted after BDAT (RFC 3030)"),
    (CHUNKS, "AUTH"): (503, "5.5.1", "AUTH is not permitted during a mail transaction"),
    (CHUNKS, "STARTTLS"): (503, "5.5.1", "STARTTLS is not permitted during a mail transaction"),
    (MAIL, "XCLIENT"): (503, "5.5.1", "Error: MAIL transaction in progress"),
    (RCPT, "XCLIENT"): (503, "5.5.1", "Error: MAIL transaction in progress"),
    (CHUNKS, "XCLIENT"): (503, "5.5.1", "Error: MAIL transaction in progress"),
}
# Verbs refused once something happened: verb -> ((attribute that records it, the reply), ...).
# No STARTTLS after AUTH either: what TLS protects must include the credentials.
_ONCE = {
    "STARTTLS": (("tls", (503, "5.5.1", "TLS already active")),
                 ("authenticated", (503, "5.5.1", "STARTTLS is not permitted after AUTH"))),
    "AUTH": (("authenticated", (503, "5.5.1", "already authenticated")),),
}
SASL_LINE_LIMIT = 12288  # octets of an AUTH line or SASL response, CRLF included (RFC 4954 4)
_REJECTED_ERROR = (503, "5.7.0", "connection refused; only QUIT is served")

# Octets refused in a command line: controls and DEL (CR and LF are the line end).
_CONTROLS = bytes(range(0, 32)) + b"\x7f"


class ProtocolError(Exception):
    """The caller broke the rules of this module (a programming error, not the client's)."""


class Reply:
    """An SMTP reply. `text` may hold several lines (a list, or a string with newlines).

    `enhanced` (RFC 2034 class.subject.detail) is put before each line unless
    the text already starts with one.
    """

    __slots__ = ("code", "lines", "enhanced")

    def __init__(self, code: int, text: str | list[str] = "", enhanced: str | None = None) -> None:
        if not 200 <= code <= 599:
            raise ProtocolError(f"bad reply code {code}")
        if isinstance(text, str):
            text = [text]
        lines: list[str] = []
        for item in text:
            lines += str(item).split("\n")
        self.code = code
        self.lines = [clean_text(line) for line in lines] or [""]
        self.enhanced = enhanced

    def __repr__(self) -> str:
        return f"Reply({self.code}, {self.lines!r}, {self.enhanced!r})"

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    def to_bytes(self) -> bytes:
        out = []
        last = len(self.lines) - 1
        for i, line in enumerate(self.lines):
            if self.enhanced and not has_enhanced_code(line):
                line = f"{self.enhanced} {line}" if line else self.enhanced
            sep = " " if i == last else "-"
            # Always "CODE SP" or "CODE -", even with no text: clients and the
            # `^[2-5]\d\d[ -]` check both read the fourth octet.
            out.append(f"{self.code}{sep}{line}\r\n")
        return "".join(out).encode("utf-8", "replace")


def clean_text(text: str) -> str:
    """Reply text with control characters and surrounding space removed."""
    if text.isprintable():
        return text.strip()
    return "".join(c for c in text if c.isprintable()).strip()


def has_enhanced_code(text: str) -> bool:
    """True if text starts with an RFC 3463 code like '5.7.1'."""
    head = text.split(" ", 1)[0]
    parts = head.split(".")
    return (
        len(parts) == 3
        and parts[0] in ("2", "4", "5")
        and all(p.isdigit() and 1 <= len(p) <= 3 and p.isascii() for p in parts[1:])
    )


# Events.
class Command:
    """A command line: `verb` upper-cased, `arg` the rest of the line after one space."""

    __slots__ = ("verb", "arg")

    def __init__(self, verb: str, arg: str) -> None:
        self.verb = verb
        self.arg = arg

    def __repr__(self) -> str:
        return f"Command({self.verb!r}, {self.arg!r})"


class OutOfSequence:
    """A known command that is not legal now; answer it with `reply`."""

    __slots__ = ("command", "reply")

    def __init__(self, command: Command, reply: Reply) -> None:
        self.command = command
        self.reply = reply


class BadLine:
    """A line that is not a command (too long, control octets, not UTF-8); answer it with `reply`."""

    __slots__ = ("reply",)

    def __init__(self, reply: Reply) -> None:
        self.reply = reply


class BadChunk(BadLine):
    """A BDAT line without a readable size; answer with `reply`, after which no transaction is open."""

    __slots__ = ()


class AuthResponse:
    """The client's answer to a 334 challenge: `line` without its CRLF (base64 text, or "*" to cancel)."""

    __slots__ = ("line",)

    def __init__(self, line: str) -> None:
        self.line = line

    def __repr__(self) -> str:
        return "AuthResponse(***)"  # it carries a password: never in a log or a traceback


class MessageData:
    """Dot-unstuffed message octets, in order; `bare_lf`: they hold an LF without its CR, `bare_cr` a CR
    without its LF (a CR that ends them is decided by the next ones)."""

    __slots__ = ("data", "bare_lf", "bare_cr")

    def __init__(self, data: bytes, bare_lf: bool = False, bare_cr: bool = False) -> None:
        self.data = data
        self.bare_lf = bare_lf
        self.bare_cr = bare_cr


class EndOfMessage:
    """<CRLF>.<CRLF> arrived. `stats` says what the scanner saw; answer with the final reply."""

    __slots__ = ("stats",)

    def __init__(self, stats: DataStats) -> None:
        self.stats = stats


class ChunkStart:
    """A legal BDAT line: `size` octets follow as MessageData, then EndOfChunk. Needs no reply."""

    __slots__ = ("size", "last", "first")

    def __init__(self, size: int, last: bool, first: bool) -> None:
        self.size = size
        self.last = last
        self.first = first  # the transaction's first chunk

    def __repr__(self) -> str:
        return f"ChunkStart({self.size}, last={self.last}, first={self.first})"


class EndOfChunk:
    """A BDAT chunk has been read. `stats` covers every chunk so far; answer with one reply."""

    __slots__ = ("stats", "last")

    def __init__(self, stats: DataStats, last: bool) -> None:
        self.stats = stats
        self.last = last


class ConnectionClosed:
    """The client closed its side. `in_data` is true if a message was cut short."""

    __slots__ = ("in_data",)

    def __init__(self, in_data: bool) -> None:
        self.in_data = in_data


NEED_DATA = object()  # next_event(): feed more bytes first


class ServerConnection:
    """One SMTP session, server side."""

    def __init__(self, max_command_length: int = 512, max_line_length: int = 1000) -> None:
        self._state = CONNECTED
        self.max_command_length = max_command_length
        self.max_line_length = max_line_length
        self._rx = ReceiveBuffer()
        self._eof = False
        self._pending: object = None  # the event awaiting its reply
        self._stats: DataStats | None = None
        self._message_ended = False
        self._command_crlf = True  # the last command line ended in CRLF (not a bare LF)
        self._chunk_end: object = None   # BDAT: the event that ends the chunk being read
        self._chunk_return = READY       # BDAT: the state an illegal BDAT goes back to
        self.tls = False            # STARTTLS answered 220; the caller sets it for TLS from the start (SMTPS)
        self.authenticated = False  # AUTH answered 235

    @property
    def state(self) -> str:
        """The current state; only replies (send) and close() change it."""
        return self._state

    def close(self) -> None:
        """The session is over: the client went away, or nothing more can be said to it."""
        self._pending = None
        self._state = CLOSED

    @property
    def buffered(self) -> int:
        """Octets received and not yet turned into events (non-zero: the client pipelined)."""
        return len(self._rx)

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; b"" means it closed its side."""
        if data:
            self._rx.feed(data)
        else:
            self._eof = True

    def next_event(self) -> object:
        if self._pending is not None:
            raise ProtocolError("the previous event has not been answered")
        if self._state == CLOSED:
            raise ProtocolError("connection is closed")
        if self._state == DATA:
            return self._next_data_event()
        if self._state == BDAT:
            return self._next_chunk_event()
        sasl = self._state == SASL
        limit = self.max_command_length
        if sasl or self._rx.peek(5).upper() == b"AUTH ":
            limit = max(limit, SASL_LINE_LIMIT)  # room for an initial response
        line = self._rx.take_line(limit)
        if line is None:
            return ConnectionClosed(False) if self._eof else NEED_DATA
        if line is LINE_TOO_LONG:
            if sasl:
                return self._expect(BadLine(Reply(500, "Authentication Exchange line is too long", "5.5.6")))
            return self._expect(BadLine(Reply(500, "Line too long", "5.5.2")))
        self._command_crlf = line.endswith(b"\r\n")
        line = line[:-2] if self._command_crlf else line[:-1]
        if len(line.translate(None, _CONTROLS)) != len(line):
            return self._expect(BadLine(Reply(500, "Control characters are not allowed in commands", "5.5.2")))
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return self._expect(BadLine(Reply(500, "Command is not valid UTF-8", "5.5.2")))
        if sasl:
            return self._expect(AuthResponse(text))
        verb, _, arg = text.partition(" ")
        command = Command(verb.upper(), arg)
        if command.verb == "BDAT":
            return self._bdat(command)
        legal = TRANSITIONS[self._state]
        if command.verb not in legal and (command.verb in KNOWN_VERBS or self._state == REJECTED):
            code, enhanced, message = _SEQUENCE_ERRORS.get((self._state, command.verb), _REJECTED_ERROR)
            return self._expect(OutOfSequence(command, Reply(code, message, enhanced)))
        if command.verb in legal:
            for attribute, (code, enhanced, message) in _ONCE.get(command.verb, ()):
                if getattr(self, attribute):
                    return self._expect(OutOfSequence(command, Reply(code, message, enhanced)))
        return self._expect(command)

    def _bdat(self, command: Command) -> object:
        words = command.arg.split(" ")
        size = number(words[0])
        if not (1 <= len(words) <= 2 and size is not None and (len(words) == 1 or words[1].upper() == "LAST")):
            return self._expect(BadChunk(Reply(501, "Syntax: BDAT size [LAST]", "5.5.4")))
        last = len(words) == 2
        self._rx.start_chunk(size)
        legal = "BDAT" in TRANSITIONS[self._state]
        if legal:
            first = self._state == RCPT
            if first:
                self._stats = DataStats()
            self._chunk_end = EndOfChunk(self._stats, last)
        else:
            code, enhanced, message = _SEQUENCE_ERRORS.get((self._state, "BDAT"), _REJECTED_ERROR)
            self._chunk_end = OutOfSequence(command, Reply(code, message, enhanced))
            self._chunk_return = self._state
        self._state = BDAT
        return ChunkStart(size, last, first) if legal else self._next_chunk_event()

    def _next_chunk_event(self) -> object:
        while True:
            data, ended = self._rx.take_chunk()
            if ended:
                event = self._chunk_end
                if isinstance(event, EndOfChunk):
                    if data:
                        return self._message_data(data)  # the end comes with the next call
                    if event.last:
                        self._stats.finish()
                return self._expect(event)
            if data and isinstance(self._chunk_end, EndOfChunk):
                return self._message_data(data)
            if not data:
                return ConnectionClosed(True) if self._eof else NEED_DATA

    def _message_data(self, data: bytes) -> MessageData:
        self._stats.add(data, self.max_line_length)
        return MessageData(data, self._stats.chunk_bare_lf, self._stats.chunk_bare_cr)

    def _next_data_event(self) -> object:
        if self._message_ended:
            self._message_ended = False
            return self._expect(EndOfMessage(self._stats))
        data, ended = self._rx.take_data()
        if ended:
            self._message_ended = True
        if data:
            return self._message_data(data)
        if ended:
            return self._next_data_event()
        return ConnectionClosed(True) if self._eof else NEED_DATA

    def _expect(self, event: object) -> object:
        self._pending = event
        return event

    def send(self, reply: Reply) -> bytes:
        """The bytes of `reply`, which answers the pending event (or is the greeting, or a 421)."""
        event, self._pending = self._pending, None
        code = reply.code
        if code == 421 or self._state == CLOSED:
            self._state = CLOSED
        elif event is None:
            if self._state != CONNECTED:
                raise ProtocolError(f"unsolicited {code} reply in state {self._state}")
            self._state = AFTER_GREETING.get(code, CLOSED)
        elif isinstance(event, EndOfMessage):
            self._state = READY
        elif isinstance(event, EndOfChunk):
            self._state = AFTER_CHUNK[(200 <= code < 400, event.last)]
        elif self._state == BDAT:  # an illegal BDAT, its octets dropped
            self._state = self._chunk_return
        elif isinstance(event, BadChunk):
            self.reset_transaction()
        elif self._state == SASL:  # 334: the exchange goes on; anything else ends it (RFC 4954 4)
            self._state = SASL if code == 334 else READY
            self.authenticated = code == 235
        elif isinstance(event, Command):
            self._after_command(event.verb, code)
        return reply.to_bytes()

    def _after_command(self, verb: str, code: int) -> None:
        new_state = BY_REPLY.get((verb, code))
        if new_state is None and 200 <= code < 400 and (verb != "STARTTLS" or code == 220):
            new_state = TRANSITIONS[self._state].get(verb)
        if new_state is None:
            return
        self._state = new_state
        if verb == "AUTH":
            self.authenticated = code == 235
        elif verb == "STARTTLS":
            # RFC 3207 4.2: nothing received before the handshake may count (CVE-2011-0411).
            self._rx.clear()
            self.tls = True
        elif new_state == DATA:
            self._rx.start_data(after_crlf=self._command_crlf)
            self._stats = DataStats()

    def reset_transaction(self) -> None:
        """Leave the mail transaction (e.g. after a DATA command was refused)."""
        if self._state in (MAIL, RCPT, CHUNKS):
            self._state = READY
