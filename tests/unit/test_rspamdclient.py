"""rspamdclient: the /checkv2 request, the exchange within its deadline and reply bound (a fake rspamd on
loopback), and the reading of rspamd's answer from plain bytes: hostile or broken answers are refused or bounded,
never trusted, and nothing from them reaches a header unclean. tests/plugins/test_plugin_rspamd.py runs the plugin
against a real rspamd."""

import io
import json
import socket
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from qpsmtpd_stdio import rspamdclient as rspamd
from qpsmtpd_stdio.address import Address
from qpsmtpd_stdio.connection import Connection
from qpsmtpd_stdio.headers import Headers


def http(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", *headers] + ([] if any(h.lower().startswith(("content-length", "transfer-encoding"))
                                                         for h in headers) else [f"Content-Length: {len(body)}"])
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def answer(**data) -> bytes:
    return http(json.dumps({"action": "no action", "score": 1.5, "required_score": 15, **data}).encode())


def test_plain_answer():
    a = rspamd.parse(answer(symbols={"A": {}, "B": {}}, messages={"smtp_message": "hello"}))
    assert (a["action"], a["score"], a["required_score"], a["symbols"], a["message"]) == ("no action", 1.5, 15.0,
                                                                                         ["A", "B"], "hello")


@pytest.mark.parametrize("reply", [
    b"", b"garbage", http(b"{}", status="500 Internal Server Error"), http(b"not json"),
    http(b'{"action": "explode"}'), http(b'["no action"]'), http(b'{"action": null}'),
    http(b"[" * 100000 + b"]" * 100000),  # deep nesting: refused, not a crash
    http(b'{"action": "reject"}', "Content-Encoding: zstd"),
])
def test_nonsense_is_refused(reply):
    with pytest.raises(ValueError):
        rspamd.parse(reply)


def test_content_length_and_chunked():
    body = json.dumps({"action": "reject", "score": 20, "required_score": 15}).encode()
    assert rspamd.parse(http(body + b"trailing junk", f"Content-Length: {len(body)}"))["action"] == "reject"
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7)) + b"0\r\n\r\n"
    assert rspamd.parse(http(chunked, "Transfer-Encoding: chunked"))["action"] == "reject"
    with pytest.raises(ValueError):
        rspamd.parse(http(b"zz\r\nxx\r\n0\r\n\r\n", "Transfer-Encoding: chunked"))


def test_wrong_types_are_ignored():
    a = rspamd.parse(answer(score="lots", required_score=True, symbols=["x"], messages="no", subject=7, milter=[1],
                            **{"dkim-signature": 5}))
    assert (a["score"], a["required_score"], a["symbols"], a["message"], a["subject"], a["milter"], a["dkim"]) == (
        0.0, 0.0, [], "", "", {}, [])


def test_values_are_cleaned_before_any_header():
    a = rspamd.parse(answer(messages={"smtp_message": "go\r\naway\x00now"}, subject="Re: \r\nBcc: x@evil",
                            **{"dkim-signature": "v=1;\r\n\tb=abc\x00"}))
    assert a["message"] == "go  away now" and "\r" not in a["subject"] and "\n" not in a["subject"]
    assert a["dkim"] == [["v=1;", "b=abc"]]


class Txn:
    def __init__(self) -> None:
        self.header = Headers.parse(b"Subject: hi\r\nX-Spam: Yes\r\nX-Spam: Maybe")


class Plugin:
    def __init__(self) -> None:
        self.logged = []

    def log(self, level, message):
        self.logged.append(message)


def test_milter_changes_are_bounded_and_names_checked():
    txn, plugin = Txn(), Plugin()
    adds = {f"X-H{i}": "v" for i in range(500)}
    adds.update({"Bad Name": "x", "X-Colon:": "x", "X-Multi": [{"value": "a", "order": 0}, "b\r\nInjected: yes"]})
    rspamd.apply_milter(plugin, txn, {"add_headers": adds, "remove_headers": {"X-Spam": -1, "Subject": "all"}})
    names = txn.header.names()
    assert txn.header.get_all("X-Spam") == ["Yes"]  # -1: the last one only; "all" is not a number: ignored
    assert len(names) <= 3 + rspamd.MAX_FIELDS
    assert not any(" " in n or ":" in n for n in names)
    assert all(b"\r\nInjected" not in raw for _, raw in txn.header._fields)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_an_answer_or_valueerror(data):
    try:
        a = rspamd.parse(data)
    except ValueError:
        return
    assert a["action"] in rspamd.ACTIONS


def test_json_is_read_as_json_loads_reads_it():
    for text in ['{"a": [1, 2.5, "x\\u00e9", null, true, false, {}]}', ' \r\n{"b": -1e3} \n', '{"c": "\\"q\\""}']:
        assert rspamd._loads(text.encode()) == json.loads(text)
    for bad in [b'{"a": NaN}', b'{"a" 1}', b'{"a": 1} x', b"", b"\xff", b'{"a": Infinity}']:
        with pytest.raises(ValueError):
            rspamd._loads(bad)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20))
def test_loads_agrees_with_json(value):
    text = json.dumps(value)
    assert rspamd._loads(text.encode()) == json.loads(text)


class Message:
    """What request() and check() read of a transaction: the envelope, its id, the header, the body from the spool."""

    def __init__(self, sender: str = "a@example.org", body: bytes = b"See you at noon.\r\n") -> None:
        self.sender = Address.parse(sender) if sender else Address.parse("<>")
        self.recipients = [Address.parse("bob@example.test"), Address.parse("carol@example.test")]
        self.id = "QID.1"
        self.header = Headers.parse(b"From: a@example.org\r\nSubject: lunch")
        self.body = body

    @property
    def body_size(self) -> int:
        return len(self.body)

    def body_stream(self):
        return io.BytesIO(self.body)


def client(helo: str = "client.example") -> Connection:
    conn = Connection()
    conn.set_client("192.0.2.7", 40000)
    conn.hello_host = helo
    return conn


def request_lines(data: bytes) -> list[str]:
    assert data.endswith(b"\r\n\r\n")
    return data[:-4].decode().split("\r\n")


def test_request_carries_the_envelope_and_the_length():
    txn = Message()
    head = txn.header.as_bytes()
    lines = request_lines(rspamd.request(client(), txn, head, me="mx.example", settings_id="submission"))
    assert lines[0] == "POST /checkv2 HTTP/1.0"
    assert f"Content-Length: {len(head) + len(txn.body)}" in lines and "Connection: close" in lines
    rcpts = [line for line in lines if line.startswith("Rcpt: ")]
    assert rcpts == ["Rcpt: <bob@example.test>", "Rcpt: <carol@example.test>"]
    assert {"From: <a@example.org>", "IP: 192.0.2.7", "Helo: client.example", "Queue-Id: QID.1", "MTA-Name: mx.example",
            "Settings-ID: submission"} <= set(lines)
    assert not any(line.startswith(("Hostname:", "User:", "TLS-Version:")) for line in lines)  # empty: left out


def test_request_null_sender_and_no_header_injection():
    txn = Message(sender="")
    lines = request_lines(rspamd.request(client(helo="x\r\nSettings-ID: evil"), txn, b""))
    assert "From: <>" in lines and f"Content-Length: {len(txn.body)}" in lines
    assert not any(line.startswith(("Settings-ID", "MTA-Name")) for line in lines)
    assert [line for line in lines if line.startswith("Helo:")] == ["Helo: x  Settings-ID: evil"]


def whole(request: bytes) -> bool:
    head, end, body = request.partition(b"\r\n\r\n")
    return bool(end) and len(body) >= int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])


def fake_rspamd(answer, pause: float = 0.0, hold: bool = False):
    """A listener that reads one whole request, then sends `answer` (bytes, or an iterable of pieces with `pause`
    between them) and closes, or with `hold` waits for the client to close first; what it read is in the returned
    list. Returns (port, received, thread, server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    received = []

    def serve():
        conn, _ = server.accept()
        with conn:
            data = b""
            while not whole(data) and (more := conn.recv(65536)):
                data += more
            received.append(data)
            try:
                for piece in [answer] if isinstance(answer, bytes) else answer:
                    conn.sendall(piece)
                    time.sleep(pause)
                if hold:
                    conn.settimeout(30)
                    conn.recv(1)
            except OSError:
                pass  # the client gave up: what the test wants to see

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server.getsockname()[1], received, thread, server


def test_check_sends_request_header_and_body_and_reads_the_answer():
    txn = Message(body=b"x" * 200000 + b"\r\n")  # more than one chunk of the spool
    port, received, thread, server = fake_rspamd(answer(action="add header", symbols={"GTUBE": {}}))
    with server:
        got = rspamd.check(f"127.0.0.1:{port}", 5, client(), txn, me="mx.example")
        thread.join(5)
    assert (got["action"], got["symbols"]) == ("add header", ["GTUBE"])
    head = txn.header.as_bytes()
    assert received == [rspamd.request(client(), txn, head, me="mx.example") + head + txn.body]


def test_an_endless_answer_stops_at_max_reply():
    piece = b"HTTP/1.1 200 OK\r\n\r\n" + b" " * 65536
    # More than MAX_REPLY, and the connection held open: only the bound ends the reading before the timeout.
    port, _, thread, server = fake_rspamd((piece for _ in range(rspamd.MAX_REPLY // 65536 + 50)), hold=True)
    with server:
        with pytest.raises(ValueError, match="answer over"):
            rspamd.check(f"127.0.0.1:{port}", 5, client(), Message())
        thread.join(5)


def test_a_trickling_answer_cannot_outlast_the_timeout():
    port, _, thread, server = fake_rspamd((b"H" for _ in range(40)), pause=0.1)  # a byte every 0.1 s, for 4 s
    with server:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            rspamd.check(f"127.0.0.1:{port}", 1, client(), Message())
        assert time.monotonic() - start < 2
        thread.join(5)


class Sock:
    timeout = None

    def settimeout(self, value):
        self.timeout = value


def test_left_sets_what_remains_or_times_out():
    sock = Sock()
    rspamd._left(sock, time.monotonic() + 2)
    assert 1.5 < sock.timeout <= 2
    with pytest.raises(TimeoutError):
        rspamd._left(sock, time.monotonic() - 0.01)


def test_unchunk_joins_chunks_and_wants_the_last_one():
    assert rspamd._unchunk(b"5\r\nhello\r\nA\r\n world and\r\n0\r\n\r\n") == b"hello world and"
    for bad in (b"5\r\nhello\r\n", b"-5\r\nhello\r\n0\r\n\r\n", b""):
        with pytest.raises(ValueError):
            rspamd._unchunk(bad)


def test_float_and_field_name():
    assert [rspamd._float(v) for v in (3, 2.5, True, False, None, "4", [1])] == [3.0, 2.5, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert rspamd._field_name("X-" + "a" * 74) and not rspamd._field_name("X-" + "a" * 75)
    assert not any(rspamd._field_name(n) for n in ("", "X Y", "X:Y", "X-\u00e9", "X-\x7f", 5, None))


def test_milter_order_and_remove_all():
    txn, plugin = Txn(), Plugin()
    rspamd.apply_milter(plugin, txn, {"remove_headers": {"X-Spam": 0},
                                      "add_headers": {"X-Top": {"value": "1", "order": 0}, "X-End": {"value": "2"}}})
    assert txn.header.names() == ["X-Top", "Subject", "X-End"] and plugin.logged == []
