"""rspamd's HTTP protocol, client side, for the rspamd plugin.

    answer = rspamdclient.check("127.0.0.1:11333", 30, plugin.connection, txn, me="mx.example")
    rspamdclient.apply_milter(plugin, txn, answer["milter"])

`check` POSTs the message to /checkv2 with the envelope and what the session
knows as request headers, streams the body from the spool and reads the
answer, all within one deadline. The answer is read strictly and within
bounds: anything that is not a 200 with JSON naming a known action is a
ValueError, wrong types are ignored, and every value that may reach a header
or a reply is cleaned. `apply_milter` applies the header changes of the
answer's milter block through the plugin API objects it is given. What an
action means for the client (which reply) is the plugin's business.
"""

import time

from . import clientsocket
from .constants import LOGWARN
from .digits import number
from .headers import unstructured

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .connection import Connection
    from .plugin import Plugin
    from .transaction import Transaction

MAX_REPLY = 1 << 20  # octets of rspamd's answer read at most
MAX_FIELDS = 100     # header changes applied from one answer at most
ACTIONS = ("no action", "greylist", "add header", "rewrite subject", "soft reject", "reject")


def request(connection: "Connection", txn: "Transaction", head: bytes, me: str = "", settings_id: str = "") -> bytes:
    """The /checkv2 request head for `txn`, whose header block is `head` (the body follows it from the spool)."""
    conn = connection
    fields = [("From", str(txn.sender) if txn.sender and not txn.sender.is_null else "<>")]
    fields += [("Rcpt", str(rcpt)) for rcpt in txn.recipients]
    fields += [("IP", conn.remote_ip), ("Helo", conn.hello_host), ("Hostname", conn.remote_host),
               ("User", conn.auth_user or ""), ("Queue-Id", txn.id), ("MTA-Name", me),
               ("TLS-Version", getattr(conn.tls, "version", "") if conn.tls else ""),
               ("Settings-ID", settings_id)]
    lines = ["POST /checkv2 HTTP/1.0", f"Content-Length: {len(head) + txn.body_size}", "Connection: close"]
    # Empty values are left out; the rest are cleaned, so nothing from the envelope can split a request header.
    lines += [f"{name}: {unstructured(str(value))}" for name, value in fields if value]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def check(address: str, timeout: int, connection: "Connection", txn: "Transaction", me: str = "",
          settings_id: str = "") -> dict:
    """POST the message to /checkv2; rspamd's answer, checked and bounded (ValueError if it makes no sense).

    `timeout` seconds cover connecting, sending and the answer in all; OSError (TimeoutError) when they run out."""
    head = txn.header.as_bytes()
    out = request(connection, txn, head, me, settings_id)
    deadline = time.monotonic() + timeout
    with clientsocket.connect(address, 11333, timeout) as sock:
        sock.sendall(out)
        sock.sendall(head)
        stream = txn.body_stream()
        while chunk := stream.read(1 << 16):
            _left(sock, deadline)
            sock.sendall(chunk)
        reply = b""
        while len(reply) <= MAX_REPLY:
            _left(sock, deadline)
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    if len(reply) > MAX_REPLY:
        raise ValueError(f"answer over {MAX_REPLY} octets")
    return parse(reply)


def _left(sock, deadline: float) -> None:
    """The socket's timeout for its next call: what is left of the deadline (a slow trickle cannot extend it)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    sock.settimeout(left)


class _Strict:
    """What `_json`'s scanner asks of json.JSONDecoder: plain types, no NaN or Infinity."""
    strict, object_hook, object_pairs_hook, parse_float, parse_int = True, None, None, float, int

    def parse_constant(name):
        raise ValueError(f"{name} in JSON")


def _loads(body: bytes):
    """JSON by the C scanner json.loads uses, without `json` (whose decoder imports `re`: about 8 ms a session)."""
    import _json

    text = body.decode("utf-8").strip(" \t\r\n")
    try:
        value, end = _json.make_scanner(_Strict)(text, 0)
    except Exception as exc:  # noqa: BLE001 - the scanner's errors are ValueError, RecursionError, StopIteration...
        raise ValueError(f"{type(exc).__name__} at the start") from None
    if end != len(text):
        raise ValueError(f"extra data at {end}")
    return value


def parse(reply: bytes) -> dict:
    """rspamd's HTTP answer as {action, score, required_score, symbols, message, subject, milter, dkim}."""
    status, _, rest = reply.partition(b"\r\n")
    head, _, body = rest.partition(b"\r\n\r\n")
    parts = status.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or parts[1] != b"200":
        raise ValueError(f"rspamd answered {status[:200]!r}")
    headers = {}
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _unchunk(body)
    elif (length := number(headers.get(b"content-length"))) is not None:
        body = body[:length]
    if headers.get(b"content-encoding"):
        raise ValueError("rspamd's answer is compressed")
    try:
        data = _loads(body)
    except ValueError as exc:  # UnicodeDecodeError too
        raise ValueError(f"rspamd's answer is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("action") not in ACTIONS:
        raise ValueError(f"no known action in rspamd's answer: {str(data)[:200]!r}")
    messages = data.get("messages") if isinstance(data.get("messages"), dict) else {}
    symbols = data.get("symbols") if isinstance(data.get("symbols"), dict) else {}
    dkim = data.get("dkim-signature")
    dkim = [dkim] if isinstance(dkim, str) else [s for s in dkim if isinstance(s, str)] if isinstance(dkim, list) else []
    return {"action": data["action"], "score": _float(data.get("score")), "required_score": _float(data.get("required_score")),
            "symbols": [str(s)[:100] for s in list(symbols)[:500]],
            "message": unstructured(str(messages.get("smtp_message") or ""), 450),
            "subject": unstructured(data["subject"]) if isinstance(data.get("subject"), str) else "",
            "milter": data.get("milter") if isinstance(data.get("milter"), dict) else {},
            "dkim": [[unstructured(line) for line in s.replace("\r\n", "\n").split("\n") if line.strip()]
                     for s in dkim[:4]]}


def _float(value) -> float:
    # JSON's true and false are ints to Python; a score is neither.
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _unchunk(body: bytes) -> bytes:
    out, rest = [], body
    while True:
        size, _, rest = rest.partition(b"\r\n")
        length = int(size.split(b";")[0].strip() or b"x", 16) if size.strip().isalnum() else None
        if length is None:
            raise ValueError("bad chunked encoding in rspamd's answer")
        if length == 0:
            return b"".join(out)
        out.append(rest[:length])
        rest = rest[length + 2:]


def apply_milter(plugin: "Plugin", txn: "Transaction", milter: dict) -> None:
    """rspamd's milter_headers changes: remove_headers {name: N} (0 all, N the Nth, -N from the end), then
    add_headers {name: value | {value, order} | [those]} (order 0 on top, none at the end)."""
    removes = milter.get("remove_headers")
    for name, nth in list(removes.items())[:MAX_FIELDS] if isinstance(removes, dict) else ():
        if isinstance(nth, int) and _field_name(name):
            txn.header.delete(name, nth)
    adds = milter.get("add_headers")
    count = 0
    for name, spec in list(adds.items())[:MAX_FIELDS] if isinstance(adds, dict) else ():
        if not _field_name(name):
            plugin.log(LOGWARN, f"rspamd asked to add a field with a bad name {name[:80]!r}; skipped")
            continue
        for item in (spec if isinstance(spec, list) else [spec]):
            value = item.get("value") if isinstance(item, dict) else item
            if not isinstance(value, str) or count >= MAX_FIELDS:
                continue
            count += 1
            lines = [unstructured(line) for line in value.replace("\r\n", "\n").split("\n") if line.strip()]
            order = item.get("order") if isinstance(item, dict) else None
            txn.header.add_folded(name, lines or [""], prepend=order == 0)


def _field_name(name) -> bool:
    # RFC 5322's printable field name; 76 leaves `: ` within a 78-character line. A space or colon would forge a field.
    return isinstance(name, str) and 0 < len(name) <= 76 and all("!" <= c <= "~" and c != ":" for c in name)
