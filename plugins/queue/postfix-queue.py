"""queue/postfix-queue - hand accepted mail straight to Postfix's cleanup service, as Postfix's own pickup does

Arguments (qpsmtpd's): `queue/postfix-queue [SOCKET] [FLAG_...]`

  SOCKET    cleanup's socket (default /var/spool/postfix/public/cleanup), or
            HOST:PORT for a cleanup service on TCP
  FLAG_...  cleanup flags by name: FLAG_BOUNCE, FLAG_FILTER, FLAG_HOLD,
            FLAG_DISCARD, FLAG_BCC_OK, FLAG_MAP_OK, FLAG_MILTER (default: none)

Config files:
  cleanup_sockets  sockets to try in order, one a line (qpsmtpd's file; the
                   environment's POSTFIXQUEUE wins over both)

The message (our Received header included) goes to cleanup as Postfix
records; 250 `Queued! (Queue-Id: ID)` comes only once cleanup has answered
status 0, that is once the message is in Postfix's incoming queue, fsynced.
A status of cleanup's that retrying may cure (a write error, a full disk, a
timeout) is 451; one that it cannot (the message is too big, a bad header)
is 554; no socket to reach, or a broken answer: DECLINED, 451 unless a later
queue plugin takes the message. The service user must be in the `postdrop`
group to reach public/cleanup.

Example config/plugins line:

    queue/postfix-queue /var/spool/postfix/public/cleanup

Imports at load: none beyond the core.
"""

import os
import time

from qpsmtpd_stdio import DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, OK

FLAGS = {"FLAG_BOUNCE": 1 << 0, "FLAG_FILTER": 1 << 1, "FLAG_HOLD": 1 << 2, "FLAG_DISCARD": 1 << 3,
         "FLAG_BCC_OK": 1 << 4, "FLAG_MAP_OK": 1 << 5, "FLAG_MILTER": 1 << 6}
# cleanup's status bits (cleanup_user.h): those worth a retry, then those that are not
SOFT = {0x02: "Queue file write error", 0x04: "Insufficient system resources", 0x40: "Server timeout"}
HARD = {0x01: "Message content rejected", 0x08: "Message too large", 0x10: "Too many hops",
        0x20: "Recipient unknown", 0x80: "Unknown command", 0x100: "Bad header syntax"}
LINE = 1024  # octets of one record; longer lines go as continuation records, as pickup sends them


def register(plugin, *args):
    args = list(args)
    plugin.socket = args.pop(0) if args and ("/" in args[0] or ":" in args[0]) else "/var/spool/postfix/public/cleanup"
    plugin.flags = 0
    for name in args:
        if name.upper() not in FLAGS:
            raise ValueError(f"queue/postfix-queue: unknown cleanup flag {name!r}")
        plugin.flags |= FLAGS[name.upper()]


def record(kind, data=b""):
    size, head = len(data), bytearray(kind)
    while size >= 0x80:
        head.append(size & 0x7F | 0x80)
        size >>= 7
    head.append(size)
    return bytes(head) + data


def attributes(stream):
    """One list of cleanup's `name\\0value\\0 ... \\0` attributes, bounded."""
    found, name = {}, None
    while len(found) < 16:
        word = _until_nul(stream)
        if name is None:
            if not word:
                return found
            name = word
        else:
            found[name], name = word, None
    raise ValueError("too many attributes")


def _until_nul(stream):
    out = bytearray()
    while (c := stream.read(1)) and c != b"\0":
        out += c
        if len(out) > 4096:
            raise ValueError("attribute too long")
    if not c:
        raise ValueError("cleanup closed the connection")
    return out.decode("utf-8", "replace")


def connect(target, timeout):
    import socket  # here: a session refused before its message does not pay for socket.py

    if target.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(target)
        return sock
    host, _, port = target.rpartition(":")
    return socket.create_connection((host.strip("[]"), int(port)), timeout)


def hook_queue(plugin, txn):
    targets = [os.environ["POSTFIXQUEUE"]] if os.environ.get("POSTFIXQUEUE") else \
        plugin.config("cleanup_sockets") or [plugin.socket]
    for target in targets:
        try:
            sock = connect(target.strip(), 60)
        except (OSError, ValueError) as exc:
            plugin.log(LOGERROR, f"cannot reach cleanup at {target}: {exc}")
            continue
        with sock, sock.makefile("rwb") as stream:
            try:
                return inject(plugin, txn, stream)
            except (OSError, ValueError) as exc:
                plugin.log(LOGERROR, f"cleanup at {target}: {exc}")
                return DECLINED
    return DECLINED


def inject(plugin, txn, stream):
    hello = attributes(stream)
    if "queue_id" not in hello:  # Postfix 3.x names its protocol first, in a list of its own
        hello = attributes(stream)
    queue_id = hello.get("queue_id", "?")
    stream.write(b"flags\0" + str(plugin.flags).encode() + b"\0\0")
    out = [record(b"T", str(int(time.time())).encode()), record(b"S", txn.sender.address.encode("utf-8"))]
    out += [record(b"R", rcpt.address.encode("utf-8")) for rcpt in txn.recipients]
    out.append(record(b"M"))
    stream.write(b"".join(out))
    pending = b""
    for chunk in txn.message_chunks(b"\n"):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        stream.write(b"".join(_lines(lines)))
    if pending:
        stream.write(b"".join(_lines([pending])))
    stream.write(record(b"X") + record(b"E"))
    stream.flush()
    answer = attributes(stream)
    status = int(answer.get("status", "-1") or -1)
    reason = answer.get("reason", "")
    if status == 0:
        plugin.log(LOGINFO, f"queued {txn.id} in Postfix as {queue_id}")
        return OK, f"Queued! (Queue-Id: {queue_id})"
    if status < 0:
        raise ValueError(f"no status in cleanup's answer {answer!r}")
    text = reason or next((t for bit, t in SOFT.items() if status & bit), None) or \
        next((t for bit, t in HARD.items() if status & bit), f"cleanup status {status}")
    plugin.log(LOGERROR, f"Postfix refused {txn.id}: status {status}: {text}")
    if any(status & bit for bit in SOFT):
        return DENYSOFT, f"4.3.0 {text}"
    return DENY, f"5.3.0 {text}"


def _lines(lines):
    for line in lines:
        while len(line) > LINE:
            yield record(b"L", line[:LINE])
            line = line[LINE:]
        yield record(b"N", line)
