"""queue/qmail-queue - hand accepted mail to qmail's qmail-queue (or a program with its interface)

Arguments: `queue/qmail-queue [PATH] [timeout N]`

  PATH        the program (default `$QMAIL/bin/qmail-queue`, QMAIL defaulting
              to /var/qmail). As in qpsmtpd, `QMAILQUEUE` in the environment
              overrides both, so qmail-qfilter, simscan and the like drop in.
  timeout N   seconds to wait for its exit once the message is written
              (default 30; keep it under plugin_timeout).

Config files: none.

The qmail-queue protocol (qmail-queue(8)): the message (headers, including
our Received, and body, LF line ends) on its fd 0; the envelope on its fd 1,
`F<sender>\\0` then `T<recipient>\\0` for each recipient, then `\\0`. Envelope
addresses are checked before anything is started: one holding a NUL or any
other control octet (which would add a recipient in this NUL-separated
format) is refused with 451 and logged at LOGERROR; the SMTP parser never
lets one through, so this is an assertion kept in force.

Its stderr is captured and logged (under inetd our fd 2 is the client). Its
exit status, as qmail-queue(8) and qmail-smtpd document it:
  - 0: 250 `Queued! <time> qp <pid> <Message-Id>`, as qpsmtpd.
  - 11-40 (permanent: 11 address too long, 31 refused for all
    recipients): 554 with qmail's text.
  - any other status, a signal, a failed start, a timeout, or a message or
    envelope it did not read whole: DECLINED (451 unless a later queue
    plugin takes the message); the text is logged.

Example config/plugins line:

    queue/qmail-queue /var/qmail/bin/qmail-queue

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, LOGWARN, OK

_EXIT = {
    11: "5.1.3 envelope address too long for qq", 31: "5.3.0 mail server permanently rejected message",
    51: "qq out of memory", 52: "qq timeout", 53: "qq write error or disk full", 54: "qq read error",
    55: "qq unable to read configuration", 56: "qq trouble making network connection",
    61: "qq trouble in home directory", 62: "qq trouble creating files in queue", 63: "qq trouble in queue/pid",
    64: "qq trouble in queue/mess", 65: "qq trouble in queue/intd", 66: "qq trouble in queue/todo",
    71: "mail server temporarily rejected message", 72: "connection to mail server timed out",
    73: "connection to mail server rejected", 74: "communication with mail server failed",
    81: "qq internal bug", 91: "qq envelope format error",
}


def register(plugin, *args):
    import os

    path = args[0] if args and args[0] != "timeout" else None
    opts = plugin.options({"timeout": "30"}, start=1 if path else 0)
    plugin.timeout = float(opts["timeout"])
    plugin.path = os.environ.get("QMAILQUEUE") or path or os.environ.get("QMAIL", "/var/qmail") + "/bin/qmail-queue"


def envelope(txn):
    """F<sender>\\0T<rcpt>\\0...\\0, or ValueError if an address holds a NUL or a control octet."""
    parts = [b"F" + txn.sender.address.encode("utf-8")]
    parts += [b"T" + rcpt.address.encode("utf-8") for rcpt in txn.recipients]
    for part in parts:
        if any(octet < 0x20 or octet == 0x7F for octet in part):
            raise ValueError(f"control octet in envelope address {part[1:]!r}")
    return b"\0".join(parts) + b"\0\0"


def hook_queue(plugin, txn):
    import time

    from qpsmtpd_stdio.program import run

    if not txn.recipients:
        return DECLINED
    try:
        env = envelope(txn)
    except ValueError as exc:
        plugin.log(LOGERROR, f"refusing to queue {txn.id}: {exc}")
        return DENYSOFT, "Unable to queue message (bad envelope)"
    try:
        done = run([plugin.path], txn.message_chunks(eol=b"\n", chunk_size=1 << 18), plugin.timeout, envelope=env)
    except OSError as exc:
        plugin.log(LOGERROR, f"cannot run {plugin.path}: {exc.strerror or exc}")
        return DECLINED
    done.report(plugin.log, plugin.path, plugin.timeout)
    if done.ok:
        msg_id = (txn.header.get("Message-Id") or "").split("\n")[0].strip()
        msg_id = msg_id if msg_id.startswith("<") and msg_id.endswith(">") else f"<{msg_id}>"
        plugin.log(LOGINFO, f"queued {txn.id} via {plugin.path} (pid {done.pid})")
        return OK, f"Queued! {int(time.time())} qp {done.pid} {msg_id}"
    if done.status is not None and 11 <= done.status <= 40:
        text = _EXIT.get(done.status, "5.3.0 qq permanent problem")
        plugin.log(LOGINFO, f"{plugin.path} refused {txn.id}: exit {done.status}: {text}")
        return DENY, text if text[:1] == "5" else f"5.3.0 {text}"
    text = done.describe() + (f": {_EXIT.get(done.status, 'temporary problem')}" if (done.status or 0) > 0 else "")
    plugin.log(LOGWARN, f"{plugin.path} failed for {txn.id}: {text}")
    return DECLINED
