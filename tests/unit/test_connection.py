"""connection.py: who is calling, canonical from the moment it is known."""

from __future__ import annotations

import os
import socket

from qpsmtpd_stdio.connection import Connection, identify


def test_tcpserver_variables():
    conn = identify({"TCPREMOTEIP": "::ffff:10.0.0.1", "TCPREMOTEPORT": "4000", "TCPREMOTEHOST": "h.example",
                     "TCPLOCALIP": "::FFFF:192.0.2.1", "TCPLOCALPORT": "25", "RELAYCLIENT": ""}, fd=-1)
    assert (conn.remote_ip, conn.remote_port, conn.remote_host) == ("10.0.0.1", 4000, "h.example")
    assert (conn.local_ip, conn.local_port) == ("192.0.2.1", 25)
    assert conn.relay_client is True
    assert conn.remote_label == "h.example[10.0.0.1]:4000"


def test_bad_values_are_not_addresses():
    conn = identify({"TCPREMOTEIP": "nonsense", "TCPREMOTEPORT": "x"}, fd=-1)
    assert (conn.remote_ip, conn.remote_port, conn.relay_client) == ("", 0, False)


def test_a_pipe_has_no_address():
    read, write = os.pipe()
    try:
        conn = identify({}, fd=read)
    finally:
        os.close(read)
        os.close(write)
    assert conn.remote_ip == "" and conn.local_ip == ""


def test_the_socket_on_fd_0():
    server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    client = socket.create_connection(server.getsockname()[:2])
    accepted, _ = server.accept()
    try:
        conn = identify({}, fd=accepted.fileno())
        assert (conn.remote_ip, conn.remote_port) == ("::1", client.getsockname()[1])
        assert (conn.local_ip, conn.local_port) == ("::1", server.getsockname()[1])
    finally:
        for s in (accepted, client, server):
            s.close()


def test_set_client_forgets_the_earlier_peer():
    conn = identify({"TCPREMOTEIP": "192.0.2.10", "TCPREMOTEHOST": "proxy", "TCPREMOTEINFO": "ident",
                     "RELAYCLIENT": ""}, fd=-1)
    conn.set_client("2001:0db8::0007", 1234)
    assert (conn.remote_ip, conn.remote_port, conn.remote_host, conn.remote_info) == ("2001:db8::7", 1234, "", "")
    assert conn.relay_client is False


def test_connection_ids_differ():
    assert Connection().id != Connection().id
