"""A DNS server on 127.0.0.1 that answers from a Python function: for replies no real server would send.

    def answer(qname: str, qtype: int, question: bytes) -> tuple[int, list[bytes]] | bytes:
        return 3, []                      # (rcode, answer records), or a whole reply's bytes after the ID
    server = ScriptedDNS(answer)          # config file dns_servers: server.servers_line
    ...
    server.close()

`record()` builds one answer record; QNAME (a pointer to the name asked) is
the usual owner. dnsmasq (tests/support/dnsserver.py) serves the sane zones;
this serves the hostile ones (tests/e2e/test_dns_hostile.py, header values).
"""

from __future__ import annotations

import socket
import threading
from typing import Callable

QNAME = b"\xc0\x0c"
UDP_MAX = 65507


def record(owner: bytes, rtype: int, rdata: bytes, ttl: int = 60) -> bytes:
    return owner + rtype.to_bytes(2, "big") + b"\x00\x01" + ttl.to_bytes(4, "big") + len(rdata).to_bytes(2, "big") + rdata


def wire_name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


class ScriptedDNS:
    def __init__(self, answer: Callable) -> None:
        self.answer = answer
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries: list[tuple[str, int]] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def servers_line(self) -> str:
        return f"127.0.0.1 {self.port}"

    def serve(self) -> None:
        while True:
            try:
                query, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            end, labels = 12, []
            while query[end]:
                labels.append(query[end + 1:end + 1 + query[end]].decode("latin-1"))
                end += 1 + query[end]
            question = query[12:end + 5]
            qname, qtype = ".".join(labels), int.from_bytes(question[-4:-2], "big")
            self.queries.append((qname, qtype))
            found = self.answer(qname, qtype, question)
            if isinstance(found, bytes):
                reply = query[:2] + found
            else:
                rcode, answers = found
                reply = (query[:2] + bytes([0x81, 0x80 | rcode]) + b"\x00\x01" + len(answers).to_bytes(2, "big")
                         + b"\x00\x00\x00\x00" + question + b"".join(answers))
            self.sock.sendto(reply[:UDP_MAX], peer)

    def close(self) -> None:
        self.sock.close()
