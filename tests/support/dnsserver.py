"""A real DNS server for the tests: dnsmasq on a loopback high port, serving test zones.

    server = DNSServer(tmp_path, ["txt-record=example.test,\"v=spf1 -all\"",
                                  "host-record=mail.example.test,192.0.2.25"])
    server.start()
    ...  config file dns_servers: server.servers_line ("127.0.0.1 PORT")
    server.stop()

DNSServer(dir, records, port=53, log_queries=True) serves on that port of
127.0.0.1 instead of a free high one (port 53 needs root), and logs every
query it receives to dnsmasq-main.log (log_text()). Importing this module
does not need pytest (bench/run.py uses it).

Every name under .test, in-addr.arpa and ip6.arpa is answered from the
given dnsmasq option lines only (anything else there is NXDOMAIN), plus two
zones that fail:
  dead.test      forwarded to a UDP port that never answers: every query times out
  servfail.test  forwarded to a second dnsmasq that validates DNSSEC against
                 a third one serving unsigned data: every query is SERVFAIL
Debian package: dnsmasq-base (the binary only; `dnsmasq` adds a system service).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

ROOT_TRUST_ANCHOR = ".,20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D"


SKIP_REASON = "dnsmasq not installed (Debian: apt-get install dnsmasq-base)"


def dnsmasq_path() -> str | None:
    found = shutil.which("dnsmasq")  # /usr/sbin is not in every PATH
    return found or next((p for p in ("/usr/sbin/dnsmasq", "/sbin/dnsmasq") if os.access(p, os.X_OK)), None)


def requires_dnsmasq():
    import pytest

    return pytest.mark.skipif(dnsmasq_path() is None, reason=SKIP_REASON)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port


class DNSServer:
    def __init__(self, directory: Path, records: list[str], port: int = 0, log_queries: bool = False) -> None:
        self.directory = Path(directory)
        self.records = list(records)
        self.requested_port = port
        self.log_queries = log_queries
        self.port = 0
        self.processes: list[subprocess.Popen] = []
        self.blackhole: socket.socket | None = None

    @property
    def servers_line(self) -> str:
        return f"127.0.0.1 {self.port}"

    def start(self) -> DNSServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        # A socket that is bound but never read: queries to it are never answered.
        self.blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.blackhole.bind(("127.0.0.1", 0))
        unsigned, validating = free_port(), free_port()
        self.port = self.requested_port or free_port()
        try:
            self._run("unsigned", unsigned, ["local=/servfail.test/", "address=/servfail.test/192.0.2.99"])
            self._run("validating", validating, ["dnssec", f"trust-anchor={ROOT_TRUST_ANCHOR}",
                                                 f"server=127.0.0.1#{unsigned}"])
            self._run("main", self.port, ["local=/test/", "local=/in-addr.arpa/", "local=/ip6.arpa/",
                                          f"server=/servfail.test/127.0.0.1#{validating}",
                                          f"server=/dead.test/127.0.0.1#{self.blackhole.getsockname()[1]}"]
                      + (["log-queries"] if self.log_queries else []) + self.records)
            for port in (unsigned, validating, self.port):
                self._wait_ready(port)
        except BaseException:
            self.stop()
            raise
        return self

    def _run(self, name: str, port: int, lines: list[str]) -> None:
        conf = self.directory / f"dnsmasq-{name}.conf"
        conf.write_text("".join(line + "\n" for line in [
            f"port={port}", "listen-address=127.0.0.1", "bind-interfaces", "no-resolv", "no-hosts",
            ] + lines))
        log = open(self.directory / f"dnsmasq-{name}.log", "wb")
        cmd = [dnsmasq_path(), "--no-daemon", f"--conf-file={conf}", "--pid-file=", "--log-facility=-"]
        if os.getuid() == 0:
            cmd.append("--user=root")  # the conf file under a private tmp dir stays readable
        self.processes.append(subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL))
        log.close()

    def _wait_ready(self, port: int) -> None:
        """Until dnsmasq answers a query on `port` (any answer will do)."""
        query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ready\x04test\x00\x00\x01\x00\x01"
        deadline = time.monotonic() + 10
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.1)
            while time.monotonic() < deadline:
                if any(p.poll() is not None for p in self.processes):
                    raise RuntimeError(f"dnsmasq exited: {self.log_text()}")
                try:
                    sock.sendto(query, ("127.0.0.1", port))
                    if sock.recv(512)[:2] == b"\x12\x34":
                        return
                except OSError:
                    time.sleep(0.05)
        raise RuntimeError(f"dnsmasq on port {port} did not answer: {self.log_text()}")

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.directory.glob("dnsmasq-*.log")))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, 15)
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, 9)
                process.wait()
        self.processes = []
        if self.blackhole is not None:
            self.blackhole.close()
            self.blackhole = None


def dns_server(tmp_path_factory, records: list[str]):
    """For a module-scoped fixture: start dnsmasq with `records`, yield it, stop it."""
    if dnsmasq_path() is None:
        import pytest

        pytest.skip(SKIP_REASON)
    server = DNSServer(tmp_path_factory.mktemp("dns"), records).start()
    try:
        yield server
    finally:
        server.stop()
