"""Log lines, qpsmtpd's way: levels 0-7, `PID (hook) plugin: message`.

Where a line goes: to every `logging` hook a plugin registers (logging/file,
logging/syslog...); with no such plugin, to syslog when fd 2 is the client's
socket (as under inetd and xinetd), else to fd 2. Nothing here ever writes to
fd 1. When syslog is wanted but nothing listens on /dev/log (a container, a
box without rsyslog), lines go to FALLBACK instead (or the file named by
QPSMTPD_LOG_FALLBACK in the environment), never nowhere.
"""

import os
import sys

from .constants import LOG_LEVEL_NAMES, LOGDEBUG, LOGWARN
from .digits import number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

_SYSLOG_PRIORITY = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7}
SYSLOG_SOCKET = "/dev/log"
FALLBACK = "/var/log/qpsmtpd-stdio/in.qpsmtpd.log"  # the package makes the dir, owned by its service user


def syslog_listening(path: str = SYSLOG_SOCKET) -> bool:
    """Does a syslog daemon read `path`? (Python's syslog drops lines silently when none does.)"""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    try:
        sock.connect(path)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def fallback_path() -> str:
    return os.environ.get("QPSMTPD_LOG_FALLBACK") or FALLBACK


def destination(to_syslog: bool) -> str:
    """Where the default log goes, in words (for --check)."""
    if not to_syslog:
        return "standard error"
    return f"syslog ({SYSLOG_SOCKET})" if syslog_listening() else f"the file {fallback_path()} (no syslog listens)"


def parse_level(text: str | int | None, default: int = LOGWARN) -> int:
    """'6', 'LOGINFO' or 6 -> 6."""
    if text is None:
        return default
    if isinstance(text, int):
        return text
    text = text.strip()
    if number(text) is not None:
        return min(number(text), LOGDEBUG)
    return LOG_LEVEL_NAMES.get(text.upper(), default)


def one_line(message: str) -> str:
    """One record, one line: a client's CR or LF (or \\x85, U+2028...) must not forge log lines."""
    message = message.replace("\r", "\\r").replace("\n", "\\n ")
    if not message.isprintable():
        message = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in message)
    return message


def format_line(message: str, plugin: str = "", hook: str = "") -> str:
    """qpsmtpd's `PID (hook) plugin: message`."""
    prefix = f"{os.getpid()}"
    if hook:
        prefix += f" ({hook})"
    if plugin:
        prefix += f" {plugin}:"
    return f"{prefix} {message}"


def stderr_is_socket() -> bool:
    import stat

    try:
        return stat.S_ISSOCK(os.fstat(2).st_mode)
    except OSError:
        return False


class Log:
    """The session's log. `sinks` are callables (level, hook, plugin_name, message) -> None."""

    def __init__(self, level: int = LOGWARN, to_syslog: bool = False) -> None:
        self.level = level
        self.to_syslog = to_syslog
        self.sinks: list[Callable[[int, str, str, str], None]] = []
        self.hook = ""  # the hook running now, for the line's prefix
        self._in_sink = False
        self._syslog = None

    def __call__(self, level: int, message: str, plugin: str = "") -> None:
        message = one_line(message)  # once, here, for every sink
        if self.sinks and not self._in_sink:
            self._in_sink = True
            try:
                for sink in self.sinks:
                    try:
                        sink(level, self.hook, plugin, message)
                    except Exception as exc:  # a broken log plugin must not end the session
                        self._default(LOGWARN, f"logging plugin failed: {exc!r}; line was: {message}", plugin)
            finally:
                self._in_sink = False
            return
        if level <= self.level:
            self._default(level, message, plugin)

    def _default(self, level: int, message: str, plugin: str) -> None:
        line = format_line(message, plugin, self.hook)
        if self.to_syslog:
            if self._syslog is None:
                if syslog_listening():
                    import syslog

                    syslog.openlog("qpsmtpd-stdio", syslog.LOG_PID, syslog.LOG_MAIL)
                    self._syslog = syslog
                else:
                    self._syslog = False
            if self._syslog:
                # The PID is already in syslog's record.
                self._syslog.syslog(_SYSLOG_PRIORITY.get(level, 7), line.split(" ", 1)[1])
                return
            self._to_fallback(line)
            return
        try:
            os.write(2, (line + "\n").encode("utf-8", "backslashreplace"))
        except OSError:
            pass

    def _to_fallback(self, line: str) -> None:
        import time

        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        try:
            fd = os.open(fallback_path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:  # one write on an O_APPEND descriptor: lines of concurrent sessions never interleave
                os.write(fd, f"{stamp} {line}\n".encode("utf-8", "backslashreplace"))
            finally:
                os.close(fd)
        except OSError:
            pass  # no syslog, no file: there is nowhere left that is not the client's socket


class LogWriter:
    """A file-like object for sys.stdout/sys.stderr: what a plugin prints goes to the log."""

    def __init__(self, log: Log, level: int) -> None:
        self._log = log
        self._level = level
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            if line.strip():
                self._log(self._level, line)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"

    def fileno(self) -> int:
        raise OSError("not a real file")


def redirect_std_streams(log: Log) -> None:
    """print() and stray tracebacks go to the log, never onto the wire."""
    from .constants import LOGINFO

    sys.stdout = LogWriter(log, LOGINFO)
    sys.stderr = LogWriter(log, LOGWARN)
