"""A milter that answers from a script, for the replies no installed milter gives on demand (reply codes,
discard, quarantine, recipient and sender changes, a replaced body, malformed changes).

    with ScriptedMilter({b"R": [reply(b"r")], b"E": [addheader("X-A", "1"), reply(b"a")]}) as m:
        ...  # plugin line: f"milter scripted 127.0.0.1:{m.port}"
    m.seen  # every (command, data) the MTA sent, in order

Each key is the command octet of a stage (C connect, H helo, M mail, R rcpt, T data, L header, N end of
header, B body, E end of body); its value is the list of packets answered to that command (by default
`continue`, and nothing for macros, abort and quit). It speaks through qpsmtpd_stdio.milter's framing; the
option negotiation answers with `actions` and `protocol` as given.
"""

from __future__ import annotations

import socket
import struct
import threading

from qpsmtpd_stdio import milter


def reply(command: bytes, data: bytes = b"") -> bytes:
    return milter.packet(command, data)


def addheader(name: str, value: str) -> bytes:
    return reply(milter.ADDHEADER, name.encode() + b"\0" + value.encode() + b"\0")


def insheader(index: int, name: str, value: str) -> bytes:
    return reply(milter.INSHEADER, struct.pack(">I", index) + name.encode() + b"\0" + value.encode() + b"\0")


def chgheader(index: int, name: str, value: str) -> bytes:
    return reply(milter.CHGHEADER, struct.pack(">I", index) + name.encode() + b"\0" + value.encode() + b"\0")


class ScriptedMilter:
    def __init__(self, script: dict[bytes, list[bytes]], actions: int = milter.ALL_ACTIONS, protocol: int = 0) -> None:
        self.script = {k: list(v) for k, v in script.items()}
        self.actions, self.protocol = actions, protocol
        self.seen: list[tuple[bytes, bytes]] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def __enter__(self) -> ScriptedMilter:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        buffer = b""
        while True:
            while len(buffer) < 4 or len(buffer) < 4 + struct.unpack(">I", buffer[:4])[0]:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            length = struct.unpack(">I", buffer[:4])[0]
            command, body, buffer = buffer[4:5], buffer[5:4 + length], buffer[4 + length:]
            self.seen.append((command, body))
            if command == milter.OPTNEG:
                conn.sendall(reply(milter.OPTNEG_REPLY, struct.pack(">III", 6, self.actions, self.protocol)))
            elif command in (milter.MACRO, milter.ABORT):
                continue
            elif command in (milter.QUIT, milter.QUIT_NC):
                return
            else:
                answers = self.script.get(command)
                conn.sendall(b"".join(answers) if answers else reply(milter.CONTINUE))
