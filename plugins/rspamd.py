"""rspamd - scan each message with rspamd; follow its action, apply its header changes and DKIM signature

Arguments: `rspamd [HOST:PORT | unix:PATH] [timeout S] [defer_on_error 0|1] [max_size KB]
[reject_authenticated 0|1] [spam_header NAME] [settings_id NAME]`

  HOST:PORT     rspamd's normal worker (default 127.0.0.1:11333), or its
                proxy (11332) in self-scan mode; `unix:/run/rspamd/normal.sock`
                for a UNIX socket.
  timeout       seconds for connecting, sending and the answer, in all
                (default 30).
  defer_on_error  0 (default): if rspamd cannot be reached or answers
                nonsense, accept the message with `X-Spam-Status: Unknown,
                rspamd unavailable` and log it; 1: answer 451 so the client
                retries.
  max_size      skip messages over KB kilobytes (default 51200, rspamd's own
                max_message).
  reject_authenticated  1: follow reject and soft reject for relay clients
                and authenticated users too (default 0: their mail is still
                scanned, so rspamd can sign it, but never refused).
  spam_header   the field added for the `add header` action (default
                `X-Spam`, value `Yes`, as rspamd's own milter adds).
  settings_id   rspamd settings to apply (its Settings-ID header: a block
                of rspamd's settings.conf), e.g. for a submission port.

The message goes to rspamd's HTTP protocol (POST /checkv2) with the envelope
and what the session knows: From, one Rcpt per recipient, IP, Helo,
Hostname (when tcpserver or the PTR check gave one), User (the AUTH login),
Queue-Id, MTA-Name and the TLS version. It is streamed from the spool as it
stands after the plugins before this one.

rspamd's action decides:
  reject          554 5.7.1 with rspamd's SMTP message (or "Spam message rejected")
  soft reject     451 4.7.1 with rspamd's message (or "Try again later")
  greylist        451 4.7.1, as soft reject
  rewrite subject Subject becomes rspamd's rewritten subject
  add header      `X-Spam: Yes`
  no action       accepted
Whatever the action, the header changes rspamd returns (its milter_headers
module: add_headers, remove_headers) are applied, and a DKIM-Signature it
made (dkim_signing, for authenticated users and its local networks) goes on
top of the message. Values from rspamd are cleaned like every plugin-written
field (no control characters). The transaction note `rspamd` holds action,
score, required_score and the symbol names; spam lowers the connection's
karma by 1. Naughty connections are not scanned.

Example config/plugins line:

    rspamd 127.0.0.1:11333 timeout 20 defer_on_error 1

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, LOGWARN
from qpsmtpd_stdio.digits import number
from qpsmtpd_stdio.headers import unstructured

MAX_REPLY = 1 << 20  # octets of rspamd's answer read at most
MAX_FIELDS = 100     # header changes applied from one answer at most
ACTIONS = ("no action", "greylist", "add header", "rewrite subject", "soft reject", "reject")


def register(plugin, *args):
    address = args[0] if args and len(args) % 2 == 1 else "127.0.0.1:11333"
    plugin.opts = plugin.options({"timeout": "30", "defer_on_error": "0", "max_size": "51200",
                                  "reject_authenticated": "0", "spam_header": "X-Spam"},
                                 start=1 if args and len(args) % 2 == 1 else 0)
    plugin.opts["address"] = address
    for name in ("timeout", "max_size"):
        if number(plugin.opts[name]) is None:
            raise ValueError(f"{name} must be a whole number, not {plugin.opts[name]!r}")


def hook_data_post(plugin, txn):
    opts = plugin.opts
    if plugin.connection.notes.get("naughty"):
        plugin.log(LOGINFO, "skip, naughty")
        return DECLINED
    if txn.data_size > number(opts["max_size"]) * 1024:
        plugin.log(LOGINFO, f"skip, too large ({txn.data_size})")
        return DECLINED
    try:
        answer = check(plugin, txn)
    except (OSError, ValueError) as exc:
        plugin.log(LOGERROR, f"rspamd {opts['address']}: {exc}")
        if opts["defer_on_error"] not in ("0", "no", ""):
            return DENYSOFT, "4.3.0 Unable to scan for spam, try again later"
        txn.header.add("X-Spam-Status", "Unknown, rspamd unavailable", prepend=True)
        return DECLINED
    action = answer["action"]
    score, required = answer["score"], answer["required_score"]
    txn.notes["rspamd"] = {"action": action, "score": score, "required_score": required,
                           "symbols": sorted(answer["symbols"])}
    apply_milter(plugin, txn, answer["milter"])
    for signature in answer["dkim"]:
        txn.header.add_folded("DKIM-Signature", signature, prepend=True)
    summary = f"{action}, {score:g} / {required:g}"
    if action in ("reject", "soft reject", "greylist", "add header", "rewrite subject"):
        plugin.adjust_karma(-1)
    if action in ("reject", "soft reject", "greylist"):
        if plugin.is_immune(txn, quiet=True) and opts["reject_authenticated"] in ("0", "no", ""):
            plugin.log(LOGINFO, f"pass, {summary}, not refused: relay client or authenticated")
            return DECLINED
        message = answer["message"]
        plugin.log(LOGINFO, f"fail, {summary}" + (f": {message}" if message else ""))
        if action == "reject":
            return DENY, f"5.7.1 {message or 'Spam message rejected'}"
        return DENYSOFT, f"4.7.1 {message or 'Try again later'}"
    if action == "add header":
        txn.header.add(opts["spam_header"], "Yes", prepend=True)
    elif action == "rewrite subject":
        txn.header.replace("Subject", answer["subject"] or f"*** SPAM *** {txn.header.get('Subject') or ''}".rstrip())
    plugin.log(LOGINFO, f"pass, {summary}")
    return DECLINED


def check(plugin, txn):
    """POST the message to /checkv2; rspamd's answer, checked and bounded (ValueError if it makes no sense)."""
    import time

    from qpsmtpd_stdio import clientsocket

    conn = plugin.connection
    head = txn.header.as_bytes()
    fields = [("From", str(txn.sender) if txn.sender and not txn.sender.is_null else "<>")]
    fields += [("Rcpt", str(rcpt)) for rcpt in txn.recipients]
    fields += [("IP", conn.remote_ip), ("Helo", conn.hello_host), ("Hostname", conn.remote_host),
               ("User", conn.auth_user or ""), ("Queue-Id", txn.id), ("MTA-Name", (plugin.config("me") or [""])[0]),
               ("TLS-Version", getattr(conn.tls, "version", "") if conn.tls else ""),
               ("Settings-ID", plugin.opts.get("settings_id", ""))]
    request = ["POST /checkv2 HTTP/1.0", f"Content-Length: {len(head) + txn.body_size}", "Connection: close"]
    request += [f"{name}: {unstructured(str(value))}" for name, value in fields if value]
    deadline = time.monotonic() + number(plugin.opts["timeout"])
    with clientsocket.connect(plugin.opts["address"], 11333, number(plugin.opts["timeout"])) as sock:
        sock.sendall(("\r\n".join(request) + "\r\n\r\n").encode())
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
    import time

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


def apply_milter(plugin, txn, milter: dict) -> None:
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
    return isinstance(name, str) and 0 < len(name) <= 76 and all("!" <= c <= "~" and c != ":" for c in name)
