"""The real qpsmtpd 0.94 (Debian's `qpsmtpd` package), one session per process, to compare replies with.

    from realqpsmtpd import AVAILABLE, SKIP_REASON, session
    stdout = session(config_dir, data, TCPREMOTEIP="192.0.2.10", log=path)

Debian ships qpsmtpd's library and plugins, not the front end that runs one
session on fd 0/1; `PERL` below makes the calls that front end makes. The
library answers only when its stdin is a socket (it checks getpeername), so
the session runs on one end of a socketpair and the data goes in at the
other. Config files are read from `config_dir` (QPSMTPD_CONFIG), plugins
from its `plugin_dirs` (usually /usr/share/qpsmtpd/plugins); the process
runs in `config_dir`, where relative paths in the config resolve. Its log
(stderr) goes to `log`, never to the socket.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

PERL = r"""
use strict;
use Qpsmtpd::TcpServer;
$| = 1;
sub IO::Handle::connected { return getpeername(shift) }  # respond() asks this of STDIN, a socket here
my $qp = Qpsmtpd::TcpServer->new();
$qp->load_plugins();
$qp->start_connection();
$qp->run(\*STDIN);
$qp->run_hooks('post-connection');
$qp->connection->reset;
"""
AVAILABLE = Path("/usr/share/perl5/Qpsmtpd/TcpServer.pm").is_file() and shutil.which("perl") is not None
SKIP_REASON = "the real qpsmtpd is not installed (Debian package qpsmtpd; relay needs libnet-ip-perl)"


def session(config_dir: Path, data: bytes, log: Path | None = None, timeout: float = 60, **env: str) -> bytes:
    """What qpsmtpd wrote for the client during one session fed `data`."""
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "QPSMTPD_CONFIG": str(config_dir),
               "TCPREMOTEIP": "192.0.2.10", "TCPREMOTEPORT": "40000", "TCPLOCALIP": "192.0.2.1", "TCPLOCALPORT": "25"}
    environ.update(env)
    ours, theirs = socket.socketpair()
    with ours, open(log or os.devnull, "ab") as stderr:
        proc = subprocess.Popen(["perl", "-e", PERL], stdin=theirs, stdout=theirs, stderr=stderr, env=environ,
                                cwd=config_dir)
        theirs.close()
        ours.settimeout(timeout)
        ours.sendall(data)
        ours.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := ours.recv(65536):
            chunks.append(chunk)
        proc.wait(timeout)
    return b"".join(chunks)


def codes(stdout: bytes) -> list[int]:
    """The code of each complete reply (the last line of a multi-line one)."""
    return [int(line[:3]) for line in stdout.split(b"\r\n") if line[3:4] == b" " and line[:3].isdigit()]
