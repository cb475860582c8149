"""virus/clamdscan - scan each message with ClamAV's clamd; refuse infected mail

Arguments: `virus/clamdscan [clamd_socket /PATH] [clamd_host HOST] [clamd_port PORT] [deny_viruses yes|no]
[defer_on_error 1|0] [max_size KB] [scan_all 1|0] [timeout S]`

  clamd_socket    clamd's unix socket (default /var/run/clamav/clamd.ctl,
                  Debian's LocalSocket).
  clamd_host, clamd_port  clamd's TCPSocket (default host localhost); a port
                  wins over the socket, as in qpsmtpd.
  deny_viruses    yes (default): refuse an infected message, 554 5.7.1 "Virus
                  found: NAME"; no: accept it with X-Virus-Found: Yes and
                  X-Virus-Details: NAME.
  defer_on_error  1 (default): if clamd cannot be reached or fails, answer 451
                  so the client retries; 0: accept the message unscanned
                  (logged). qpsmtpd's default is 0: here mail is never
                  accepted unscanned unless asked for.
  max_size        skip messages over KB kilobytes (default 25600, clamd's own
                  StreamMaxLength default; qpsmtpd: 1024).
  scan_all        1 (default): scan every message; 0: only multipart ones.
  timeout         seconds for connecting and scanning (default 30).

Config files: me (named in X-Virus-Checked).

The whole message, headers and body as they stand, is streamed to clamd with
the INSTREAM command, in chunks straight from the spool (never whole in
memory). clamd decodes the MIME parts itself. A clean message gets
X-Virus-Found: No and X-Virus-Checked; such fields sent by the client are
removed first. An infected message lowers the connection's karma by 1.
Connections already marked naughty are not scanned (they will be refused).

Example config/plugins line:

    virus/clamdscan clamd_port 3310 deny_viruses yes

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, LOGNOTICE
from qpsmtpd_stdio.headers import unstructured

CHUNK = 1 << 16


def register(plugin, *args):
    plugin.opts = plugin.options({"deny_viruses": "yes", "defer_on_error": "1", "max_size": "25600", "scan_all": "1",
                                  "timeout": "30", "clamd_socket": "/var/run/clamav/clamd.ctl", "clamd_host": "localhost"})


def _yes(value):
    return str(value).lower() not in ("0", "no", "false", "off", "")


def hook_data_post(plugin, txn):
    opts = plugin.opts
    if plugin.is_naughty() or plugin.too_big(txn, float(opts["max_size"])):
        return DECLINED
    if not _yes(opts["scan_all"]) and "multipart/" not in (txn.header.get("Content-Type") or "").lower():
        plugin.log(LOGNOTICE, "skip, not multipart")
        return DECLINED
    for name in ("X-Virus-Found", "X-Virus-Checked", "X-Virus-Details"):
        txn.header.delete(name)
    try:
        found = scan(plugin, txn)
    except (OSError, ValueError) as exc:
        plugin.log(LOGERROR, f"clamd {where(opts)}: {exc}")
        if _yes(opts["defer_on_error"]):
            return DENYSOFT, "4.3.0 Unable to scan for viruses, try again later"
        return DECLINED
    if found:
        plugin.log(LOGNOTICE, f"fail, found virus {found}")
        notes = plugin.connection.notes
        notes["karma"] = notes.get("karma", 0) - 1
        if _yes(opts["deny_viruses"]):
            return DENY, f"5.7.1 Virus found: {found}"
        txn.header.add("X-Virus-Found", "Yes", prepend=True)
        txn.header.add("X-Virus-Details", unstructured(found), prepend=True)
        return DECLINED
    plugin.log(LOGINFO, "pass, clean")
    me = (plugin.config("me") or ["localhost"])[0]
    txn.header.add("X-Virus-Checked", f"by ClamAV on {me}", prepend=True)
    txn.header.add("X-Virus-Found", "No", prepend=True)
    return DECLINED


def where(opts):
    return f"{opts['clamd_host']}:{opts['clamd_port']}" if opts.get("clamd_port") else opts["clamd_socket"]


def scan(plugin, txn):
    """The signature name clamd found in the message, or "" if it is clean. Raises OSError/ValueError."""
    from qpsmtpd_stdio import clientsocket

    opts = plugin.opts
    if opts.get("clamd_port"):
        address = f"[{opts['clamd_host']}]:{int(opts['clamd_port'])}"
    else:
        address = "unix:" + opts["clamd_socket"]
    with clientsocket.connect(address, 3310, float(opts["timeout"])) as sock:
        try:
            sock.sendall(b"zINSTREAM\0")
            for chunk in txn.message_chunks(b"\r\n", CHUNK):
                sock.sendall(len(chunk).to_bytes(4, "big") + chunk)
            sock.sendall(b"\0\0\0\0")
        except (BrokenPipeError, ConnectionResetError):
            pass  # clamd stopped reading (e.g. its size limit): its answer says why
        reply = b""
        while not reply.endswith(b"\0") and len(reply) < 4096 and (data := sock.recv(4096)):
            reply += data
    answer = reply.rstrip(b"\0").decode("utf-8", "replace").strip()
    if answer.endswith(" FOUND"):
        return answer.partition(": ")[2][:-len(" FOUND")].strip() or "unknown"
    if answer.endswith(": OK"):
        return ""
    raise ValueError(f"clamd answered {answer[:200]!r}" if answer else "clamd closed the connection without an answer")
