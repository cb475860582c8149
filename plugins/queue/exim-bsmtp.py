"""queue/exim-bsmtp - hand accepted mail to Exim as batched SMTP (`exim -bS`)

Arguments (qpsmtpd's): `queue/exim-bsmtp [exim_path PATH] [timeout N]`

  exim_path  Exim's batched SMTP command (default /usr/sbin/rsmtp, Debian's
             `exim4 -bS`); it is run as `PATH -bS`
  timeout    seconds to wait for it once the message is written (default 30)

Config files: none.

The envelope and the message (our Received header included, LF line ends,
dot-stuffed) go to its standard input as one batched SMTP transaction:
HELO, MAIL, RCPT..., DATA, the message, `.`, QUIT. Exim answers nothing when
it has taken the message into its queue and exits 0: then 250. An error
reply it prints (`550 ...`) ends the message with that class: 5xx is 554
with Exim's text, anything else 451. Any other exit, a timeout, or a message
it did not read whole: DECLINED, which is 451 unless a later queue plugin
takes it. Envelope addresses holding a control octet are refused before it
runs.

Example config/plugins line:

    queue/exim-bsmtp exim_path /usr/sbin/rsmtp

Imports at load: none beyond the core.
"""

import os

from qpsmtpd_stdio import DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, LOGWARN, OK
from qpsmtpd_stdio.replies import reply_code


def register(plugin, *args):
    opts = plugin.options({"exim_path": "/usr/sbin/rsmtp", "timeout": "30"})
    plugin.exim = opts["exim_path"]
    plugin.timeout = float(opts["timeout"])
    if not os.access(plugin.exim, os.X_OK):
        plugin.log(LOGERROR, f"cannot run {plugin.exim}: set exim_path in config/plugins; mail gets 451")


def batch(txn, me):
    """The batched SMTP transaction, in chunks: the envelope, the dot-stuffed message, the end."""
    yield (f"HELO {me}\nMAIL FROM:<{txn.sender.address}>\n"
           + "".join(f"RCPT TO:<{rcpt.address}>\n" for rcpt in txn.recipients) + "DATA\n").encode()
    at_line_start = True
    last = b"\n"
    for chunk in txn.message_chunks(eol=b"\n", chunk_size=1 << 18):
        if not chunk:
            continue
        stuffed = chunk.replace(b"\n.", b"\n..")
        yield b"." + stuffed if at_line_start and chunk[:1] == b"." else stuffed
        at_line_start, last = chunk.endswith(b"\n"), chunk[-1:]
    yield (b"" if last == b"\n" else b"\n") + b".\nQUIT\n"


def hook_queue(plugin, txn):
    from qpsmtpd_stdio.program import run

    addresses = [txn.sender.address] + [rcpt.address for rcpt in txn.recipients]
    if not txn.recipients or any(c < " " or c == "\x7f" for a in addresses for c in a):
        plugin.log(LOGERROR, f"refusing to queue {txn.id}: no recipient, or a control octet in the envelope")
        return DENYSOFT, "Unable to queue message (bad envelope)"
    me = (plugin.config("me") or [os.uname().nodename])[0]
    try:
        done = run([plugin.exim, "-bS"], batch(txn, me), plugin.timeout)
    except OSError as exc:
        plugin.log(LOGERROR, f"cannot run {plugin.exim}: {exc.strerror or exc}")
        return DECLINED
    done.report(plugin.log, plugin.exim, plugin.timeout)
    replies = [line for line in done.said.splitlines() if reply_code(line[:4].strip() or "x") and line[3:4] == " "]
    code = reply_code(replies[-1][:3]) if replies else None
    if code and code >= 400:
        text = replies[-1][4:].strip()
        plugin.log(LOGWARN, f"exim refused {txn.id}: {replies[-1]}")
        return (DENY, f"5.0.0 {text}") if code >= 500 else (DENYSOFT, f"4.0.0 {text}")
    if done.ok:
        plugin.log(LOGINFO, f"queued {txn.id} to exim via BSMTP")
        return OK, "Queued!"
    plugin.log(LOGWARN, f"{plugin.exim} -bS failed for {txn.id}: {done.describe()}")
    return DECLINED
