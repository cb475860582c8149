"""An in-process harness for a plugin's own tests: a whole SMTP dialogue against a temp config dir.

    from qpsmtpd_stdio.testing import Harness

    def test_refuses_listed_sender(tmp_path):
        smtp = Harness(tmp_path, plugins=["badmailfrom", "rcpt_ok"])
        smtp.config("rcpthosts", "example.test")
        smtp.config("badmailfrom", "spammer@example.org")
        r = smtp.run("EHLO c.example", "MAIL FROM:<spammer@example.org>", "QUIT")
        assert r.codes == [220, 250, 550, 221]

The session is the real one (qpsmtpd_stdio.main.serve: the config read from
files, the plugins loaded by name, the same replies), driven over an
in-memory transport instead of fd 0/1. By default the client is polite: it
sends one command, then waits for the reply, and sends a message body only
after 354; `pipelined=True` sends everything at once.

A `Result` holds the replies, every log line at every level, and the
messages that were queued. Messages are captured by the plugin
`testing/capture`, listed last: it answers `queue` with 250 when no plugin
before it did, and records every message that was queued (by it or by
your queue plugin).
"""

import sys
import threading
from pathlib import Path

from .transport import Timeout

TIMEOUT = object()  # a run() item: the client says nothing until the read timeout
_CAPTURE = '''"""testing/capture - records queued messages for qpsmtpd_stdio.testing; answers queue if no plugin did."""
from qpsmtpd_stdio import OK


def hook_queue(plugin, txn):
    return OK, "Queued"


def hook_queue_post(plugin, txn):
    plugin.connection.notes.setdefault("testing.queued", []).append(
        (txn.sender.address, [r.address for r in txn.recipients], b"".join(txn.message_chunks()), txn.header))
'''


class Queued:
    """A message as it was handed to the queue: envelope, header object, and bytes with CRLF line ends."""

    def __init__(self, sender: str, recipients: list[str], data: bytes, header) -> None:
        self.sender = sender
        self.recipients = recipients
        self.data = data
        self.header = header

    @property
    def body(self) -> bytes:
        return self.data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in self.data else b""

    def __repr__(self) -> str:
        return f"<Queued from {self.sender!r} to {self.recipients!r}, {len(self.data)} octets>"


class ServerReply:
    def __init__(self, code: int, lines: list[str]) -> None:
        self.code = code
        self.lines = lines  # text after "NNN " / "NNN-", enhanced code included

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __repr__(self) -> str:
        return f"<{self.code} {self.text!r}>"


class Result:
    def __init__(self, output: bytes, records: list[tuple[int, str, str, str]], queued: list[Queued], connection) -> None:
        self.output = output
        self.records = records  # (level, hook, plugin, message) for every log line, whatever the loglevel
        self.queued = queued
        self.connection = connection
        self.replies = parse_replies(output)

    @property
    def codes(self) -> list[int]:
        return [reply.code for reply in self.replies]

    @property
    def log(self) -> list[str]:
        """Each log line as `LEVEL (hook) plugin: message`."""
        lines = []
        for level, hook, plugin, message in self.records:
            prefix = f"{level}" + (f" ({hook})" if hook else "") + (f" {plugin}:" if plugin else "")
            lines.append(f"{prefix} {message}")
        return lines

    @property
    def log_text(self) -> str:
        return "\n".join(self.log)


class MemoryTransport:
    """transport.Transport's interface in memory: reads come from `items`, writes collect in `output`."""

    def __init__(self, items: list) -> None:
        self.items = list(items)  # bytes, TIMEOUT, or ("body", bytes): sent only after a 354
        self.output = bytearray()
        self.bytes_in = 0
        self.bytes_out = 0
        self.transcript = None
        self._out: list[bytes] = []

    def read(self, timeout: float) -> bytes:
        self.flush()
        while self.items:
            item = self.items.pop(0)
            if item is TIMEOUT:
                raise Timeout()
            if isinstance(item, tuple):
                if _last_code(self.output) != 354:
                    continue  # a polite client sends no body when DATA was refused
                item = item[1]
            self.bytes_in += len(item)
            if self.transcript is not None:
                self.transcript.received(item)
            return item
        return b""

    def write(self, data: bytes) -> None:
        self._out.append(data)

    def flush(self) -> None:
        data = b"".join(self._out)
        self._out.clear()
        if data and self.transcript is not None:
            self.transcript.sent(data)
        self.output += data
        self.bytes_out += len(data)


class Harness:
    """A config dir under `directory` (its `config/` and `plugins/`), and sessions run against it."""

    def __init__(self, directory, plugins=(), plugin_dirs=(), me: str = "mx.example.test") -> None:
        root = Path(directory)
        self.dir = root / "config"
        self.plugin_dir = root / "plugins"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        self.plugin_dirs = [str(d) for d in plugin_dirs]
        self.plugins = list(plugins)
        self.config("me", me)
        self.config("store_dir", str(self.dir))  # what plugins remember stays in the test's directory
        (self.plugin_dir / "testing").mkdir(exist_ok=True)
        (self.plugin_dir / "testing" / "capture.py").write_text(_CAPTURE)

    def config(self, name: str, *lines: str) -> Path:
        """Write config file `name`, one item a line (`plugins` sets the plugin list instead)."""
        if name == "plugins":
            self.plugins = list(lines)
            return self.dir / name
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines))
        return path

    def plugin(self, name: str, source: str) -> Path:
        """Write plugin `name` (e.g. "my_check") into the harness's plugin dir."""
        path = self.plugin_dir / (name + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        return path

    def run(self, *lines, body: str | bytes | None = None, pipelined: bool = False,
            remote_ip: str = "192.0.2.10", relay_client: bool = False, env: dict | None = None) -> Result:
        """One session. `lines` are commands (str: CRLF added), raw bytes, or TIMEOUT.

        `body` follows a DATA line: a str is sent as a client would (CRLF line
        ends, dot-stuffed, then the final dot); bytes are sent as they are.
        """
        from .config import Config
        from .connection import identify
        from .log import Log, redirect_std_streams
        from .main import serve
        from .signals import install

        self.config("plugin_dirs", str(self.plugin_dir), *self.plugin_dirs)
        path = self.dir / "plugins"
        path.write_text("".join(line + "\n" for line in self.plugins + ["testing/capture"]))
        environ = {"TCPREMOTEIP": remote_ip, "TCPREMOTEPORT": "40000", "TCPLOCALIP": "192.0.2.1", "TCPLOCALPORT": "25"}
        if relay_client:
            environ["RELAYCLIENT"] = ""
        environ.update(env or {})
        transport = MemoryTransport(_items(lines, body))
        if pipelined:
            data = b"".join(i[1] if isinstance(i, tuple) else i for i in transport.items if i is not TIMEOUT)
            transport.items = [data] + [i for i in transport.items if i is TIMEOUT]
        records: list[tuple[int, str, str, str]] = []
        log = Log(level=7)
        log.sinks.append(lambda level, hook, plugin, message: records.append((level, hook, plugin, message)))
        config = Config(str(self.dir))
        config.warn = lambda message: log(4, message)
        connection = identify(environ)

        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("Harness.run() needs the main thread: plugin_timeout is a SIGALRM")
        restore = install(terminate=False)
        stdout, stderr = sys.stdout, sys.stderr
        redirect_std_streams(log)  # what a plugin prints goes to the log, as in a real session
        try:
            serve(config, log, transport, connection)
        finally:
            sys.stdout, sys.stderr = stdout, stderr
            restore()
        queued = [Queued(*item) for item in connection.notes.get("testing.queued", [])]
        return Result(bytes(transport.output), records, queued, connection)


def _items(lines, body) -> list:
    items = []
    for line in lines:
        if line is TIMEOUT:
            items.append(TIMEOUT)
            continue
        items.append(line if isinstance(line, bytes) else line.encode("utf-8") + b"\r\n")
        if isinstance(line, str) and line.upper() == "DATA" and body is not None:
            items.append(("body", body if isinstance(body, bytes) else _message(body)))
    return items


def _message(text: str) -> bytes:
    """A message as a client sends it: CRLF line ends, dot-stuffed, then <CRLF>.<CRLF>."""
    lines = text.replace("\r\n", "\n").split("\n")
    return "".join(("." + line if line.startswith(".") else line) + "\r\n" for line in lines).encode("utf-8") + b".\r\n"


def _last_code(output: bytearray) -> int | None:
    for line in reversed(bytes(output[-2048:]).split(b"\r\n")):
        if line[3:4] == b" " and line[:3].isdigit():
            return int(line[:3])
    return None


def parse_replies(output: bytes) -> list[ServerReply]:
    replies, lines = [], []
    for line in output.decode("utf-8", "replace").split("\r\n"):
        if len(line) < 3 or not line[:3].isdigit():
            continue
        lines.append(line[4:])
        if line[3:4] != "-":
            replies.append(ServerReply(int(line[:3]), lines))
            lines = []
    return replies
