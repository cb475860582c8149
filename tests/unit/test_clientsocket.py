"""clientsocket: addresses as plugins write them, real listeners on loopback, and what it does not import."""

import socket
import subprocess
import sys
import threading

import pytest

from qpsmtpd_stdio.clientsocket import connect, split_address


@pytest.mark.parametrize("address, want", [
    ("127.0.0.1:783", ("127.0.0.1", 783)), ("localhost", ("localhost", 10)), (":25", ("localhost", 25)),
    ("[::1]:3310", ("::1", 3310)), ("[::1]", ("::1", 10)), ("::1", ("::1", 10)), ("", ("localhost", 10)),
    ("/run/clamd.ctl", "/run/clamd.ctl"), ("unix:/run/x.sock", "/run/x.sock"), ("unix:rel.sock", "rel.sock"),
])
def test_split_address(address, want):
    assert split_address(address, 10) == want


def echo_once(server: socket.socket) -> threading.Thread:
    def serve():
        conn, _ = server.accept()
        with conn:
            conn.sendall(conn.recv(100).upper())
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"),
                                          (socket.AF_INET, "localhost")])
def test_tcp(family, host):
    try:
        server = socket.socket(family)
        server.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server:
        server.listen()
        port = server.getsockname()[1]
        thread = echo_once(server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        with connect(address, 1, 5) as sock:
            sock.sendall(b"ping")
            assert sock.recv(100) == b"PING"
        assert sock.fileno() == -1  # closed by the with block
        thread.join(5)


def test_unix(tmp_path):
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()
        thread = echo_once(server)
        with connect("unix:" + path, 1, 5) as sock:
            sock.sendall(b"x")
            assert sock.recv(10) == b"X"
        thread.join(5)


def test_refused_and_missing_raise_oserror(tmp_path):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        connect(f"127.0.0.1:{port}", 1, 5)
    with pytest.raises(FileNotFoundError):
        connect(str(tmp_path / "none.sock"), 1, 5)
    with pytest.raises(OSError):
        connect("no-such-host.invalid:25", 1, 5)


def test_connecting_imports_neither_socket_nor_idna():
    code = ("import sys, _socket; s = _socket.socket(); s.bind(('127.0.0.1', 0)); s.listen();"
            "from qpsmtpd_stdio.clientsocket import connect; c = connect(f'127.0.0.1:{s.getsockname()[1]}', 1, 5);"
            "c.close(); print(sorted(m for m in ('socket', 'encodings.idna', 'enum') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
