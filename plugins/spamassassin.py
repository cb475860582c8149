"""spamassassin - score each message with SpamAssassin's spamd; tag it, or refuse it over a threshold

Arguments: `spamassassin [reject N] [reject_type perm|temp] [munge_subject_threshold N] [spamd_socket HOST:PORT|/PATH]
[spamd_user NAME] [headers none] [leave_old_headers drop|rename|keep] [defer_on_error 0|1] [max_size KB] [timeout S]`

  reject        refuse messages scoring N or more (default: never).
                `reject_threshold` is read too (qpsmtpd's old name).
  reject_type   perm (default: 554 5.7.1), temp (451), disconnect, temp_disconnect.
  munge_subject_threshold  put config `subject_prefix` (default "*** SPAM ***")
                before the Subject of spam scoring over N.
  spamd_socket  HOST:PORT, or the path of spamd's unix socket (default
                localhost:783).
  spamd_user    the User: spamd scores for (default: the user we run as;
                `vpopmail` means the recipient, for single-recipient mail).
  headers       none: add no X-Spam-* fields (results only in the note).
  leave_old_headers  what to do with X-Spam-* fields the message arrived
                with, before it is scored: rename to X-Old-Spam-* (default,
                as qpsmtpd), drop, or keep. Renamed or dropped, a client
                cannot forge a verdict. (qpsmtpd renames only the fields
                spamd returns; all X-Spam-* fields are renamed here.)
  defer_on_error  0 (default): if spamd cannot be reached or fails, accept the
                message with `X-Spam-Status: Unknown, spamd unavailable`;
                1: answer 451 so the client retries.
  max_size      skip messages over KB kilobytes (default 500, as spamc).
  timeout       seconds for connecting and scoring (default 30).

Config files: subject_prefix.

The message (headers as they stand, with `X-Envelope-From:` on top, as
qpsmtpd sends it) goes to spamd with the HEADERS command of the spamc
protocol; the X-Spam-* fields spamd returns (X-Spam-Status, X-Spam-Flag,
X-Spam-Level... as spamd's add_header config says) go on top of the message.
The transaction note `spamassassin` holds is_spam, score, required, tests and
autolearn. Spam lowers the connection's karma by 1, autolearn=ham raises it.
Relay clients, authenticated users, whitelisted hosts and senders and naughty
connections are not scored.

Example config/plugins line:

    spamassassin reject 12 munge_subject_threshold 5 spamd_socket /run/spamd.sock

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, DENYSOFT, LOGERROR, LOGINFO
from qpsmtpd_stdio.headers import unstructured
MAX_REPLY = 1 << 20  # octets of spamd's answer read at most


def register(plugin, *args):
    plugin.opts = plugin.options({"reject_type": "perm", "leave_old_headers": "rename", "defer_on_error": "0",
                                  "max_size": "500", "timeout": "30", "spamd_socket": "localhost:783"})
    if "reject" not in plugin.opts and "reject_threshold" in plugin.opts:
        plugin.opts["reject"] = plugin.opts["reject_threshold"]


def hook_data_post(plugin, txn):
    conn, opts = plugin.connection, plugin.opts
    if plugin.is_immune(txn):
        return DECLINED
    if plugin.is_naughty() or plugin.too_big(txn, float(opts["max_size"])):
        return DECLINED
    old = [name for name in dict.fromkeys(txn.header.names()) if name.lower().startswith("x-spam-")]
    action = opts["leave_old_headers"].lower()
    for name in old if action in ("drop", "rename") else ():
        for value in txn.header.get_all(name) if action == "rename" else ():
            txn.header.add("X-Old-" + name[2:], value)
        txn.header.delete(name)
    try:
        fields, verdict = scan(plugin, txn)
    except (OSError, ValueError) as exc:
        plugin.log(LOGERROR, f"spamd {opts['spamd_socket']}: {exc}")
        if opts["defer_on_error"] not in ("0", "no", ""):
            return DENYSOFT, "4.3.0 Unable to scan for spam, try again later"
        if opts.get("headers", "").lower() != "none":
            txn.header.add("X-Spam-Status", "Unknown, spamd unavailable", prepend=True)
        return DECLINED
    status = next((value for name, value in fields if name.lower() == "x-spam-status"), "")
    result = {k: v for k, _, v in (w.partition("=") for w in status.split()[1:]) if v}
    result.update(is_spam=verdict[0], score=verdict[1], required=verdict[2])
    txn.notes["spamassassin"] = result
    if opts.get("headers", "").lower() != "none":
        if not status:
            fields.append(("X-Spam-Status", f"{'Yes' if verdict[0] else 'No'}, score={verdict[1]} required={verdict[2]}"))
        for name, value in reversed(fields):
            if name.lower() != "x-spam-prev-subject":
                txn.header.add_folded(name, [unstructured(line) for line in value.split("\n")], prepend=True)
    notes = conn.notes
    notes["karma"] = notes.get("karma", 0) - verdict[0] + {"ham": 1, "spam": -1}.get(result.get("autolearn"), 0)
    threshold = opts.get("munge_subject_threshold")
    if threshold and opts.get("headers", "").lower() != "none" and verdict[0] and verdict[1] > float(threshold):
        prefix = (plugin.config("subject_prefix") or ["*** SPAM ***"])[0]
        txn.header.replace("Subject", f"{prefix} {txn.header.get('Subject') or ''}".rstrip())
    summary = f"{'Spam' if verdict[0] else 'Ham'}, {verdict[1]} / {verdict[2]}"
    if "reject" in opts and verdict[1] >= float(opts["reject"]) and float(opts["reject"]):
        return plugin.get_reject("Spam score exceeded threshold", f"{summary} >= {opts['reject']}", enhanced="7.1")
    plugin.log(LOGINFO, f"{'fail, tolerated' if verdict[0] else 'pass'}, {summary}")
    return DECLINED


def scan(plugin, txn):
    """Send the message with HEADERS; ([(name, value)], (is_spam, score, required)) from spamd's answer."""
    from qpsmtpd_stdio import clientsocket

    with clientsocket.connect(plugin.opts["spamd_socket"], 783, float(plugin.opts["timeout"])) as sock:
        head = f"X-Envelope-From: {txn.sender}\r\n".encode() + txn.header.as_bytes()
        user = plugin.opts.get("spamd_user") or _whoami()
        if user == "vpopmail" and len(txn.recipients) == 1:
            user = txn.recipients[0].address
        sock.sendall(f"HEADERS SPAMC/1.5\r\nContent-length: {len(head) + txn.body_size}\r\nUser: {user}\r\n\r\n".encode())
        sock.sendall(head)
        stream = txn.body_stream()
        while chunk := stream.read(1 << 16):
            sock.sendall(chunk)
        sock.shutdown(clientsocket.SHUT_WR)
        reply = b""
        while len(reply) < MAX_REPLY and (data := sock.recv(65536)):
            reply += data
    status, _, rest = reply.partition(b"\r\n")
    if not status.startswith(b"SPAMD/") or b" EX_OK" not in status:
        raise ValueError(f"spamd answered {status[:200]!r}")
    response, _, message = rest.partition(b"\r\n\r\n")
    verdict = None
    for line in response.split(b"\r\n"):
        key, _, value = line.decode("latin-1").partition(":")
        if key.strip().lower() == "spam":  # Spam: True ; 7.3 / 5.0
            flag, _, scores = value.partition(";")
            score, _, required = scores.partition("/")
            verdict = (flag.strip().lower() in ("true", "yes"), float(score), float(required))
    if verdict is None:
        raise ValueError("spamd sent no Spam: line")
    fields = []
    for line in message.decode("utf-8", "replace").replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1][1].append(line.strip())
        elif line.lower().startswith("x-spam-") and ":" in line:
            name, _, value = line.partition(":")
            if all("!" <= c <= "~" for c in name):  # a field name, or not a field
                fields.append((name, [value.strip()]))
    return [(name, "\n".join(v for v in values if v)) for name, values in fields], verdict


def _whoami():
    import os
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return "nobody"
