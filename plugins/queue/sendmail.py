"""queue/sendmail - hand accepted mail to a sendmail-compatible command (Postfix, Exim, OpenSMTPD...)

Arguments: `queue/sendmail [PATH [ARG ...]] [timeout N]`

  PATH        the command (default /usr/sbin/sendmail).
  ARG ...     fixed arguments put before ours, e.g. `-C /etc/postfix-out`
              for a second Postfix instance.
  timeout N   seconds to wait for its exit once the message is written
              (default 30; keep it under plugin_timeout).

Config files: none.

Runs `PATH [ARG ...] -i -f SENDER -- RCPT ...` directly, without a shell (the
null sender is passed as `<>`), and writes the message (our Received header
included) to its standard input with LF line ends; `-i` keeps a line holding
a single dot from ending it. Envelope addresses holding a control octet are
refused (451, LOGERROR) before anything runs; the SMTP parser never lets one
through. Its output is captured and logged (under inetd our fd 2 is the
client's socket).

Its exit status (sysexits.h):
  - 0: 250 `Queued by sendmail`, once the whole message was written.
  - EX_DATAERR 65, EX_NOUSER 67, EX_NOHOST 68 (the message or an address
    is refused, which retrying cannot fix): 554.
  - EX_TEMPFAIL 75 and every other status (EX_USAGE, EX_CONFIG, EX_NOPERM,
    EX_OSERR... are local trouble an admin can fix), a signal, a failed start,
    a timeout, or a message it did not read whole: DECLINED, which is 451
    unless a later queue plugin takes the message.

Example config/plugins line:

    queue/sendmail /usr/sbin/sendmail

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, LOGWARN, OK

_PERMANENT = {65: "5.6.0 message refused (EX_DATAERR)", 67: "5.1.1 recipient refused (EX_NOUSER)",
              68: "5.1.2 host unknown (EX_NOHOST)"}


def register(plugin, *args):
    args = list(args)
    opts = {"timeout": "30"}
    if len(args) >= 2 and args[-2] == "timeout":
        opts["timeout"] = args[-1]
        del args[-2:]
    plugin.command = args or ["/usr/sbin/sendmail"]
    plugin.timeout = float(opts["timeout"])


def hook_queue(plugin, txn):
    from qpsmtpd_stdio.program import run

    if not txn.recipients:
        return DECLINED
    sender = txn.sender.address or "<>"
    rcpts = [rcpt.address for rcpt in txn.recipients]
    bad = [a for a in [sender] + rcpts if any(c < " " or c == "\x7f" for c in a) or not a]
    if bad:
        plugin.log(LOGERROR, f"refusing to queue {txn.id}: control octet in envelope address {bad[0]!r}")
        return DENYSOFT, "Unable to queue message (bad envelope)"
    argv = plugin.command + ["-i", "-f", sender, "--"] + rcpts
    try:
        done = run(argv, txn.message_chunks(eol=b"\n", chunk_size=1 << 18), plugin.timeout)
    except OSError as exc:
        plugin.log(LOGERROR, f"cannot run {argv[0]}: {exc.strerror or exc}")
        return DECLINED
    done.report(plugin.log, argv[0], plugin.timeout)
    if done.ok:
        plugin.log(LOGINFO, f"queued {txn.id} via {argv[0]} for {len(rcpts)} recipient(s)")
        return OK, "Queued by sendmail"
    if done.status in _PERMANENT:
        plugin.log(LOGINFO, f"{argv[0]} refused {txn.id}: exit {done.status}")
        return DENY, _PERMANENT[done.status]
    plugin.log(LOGWARN, f"{argv[0]} failed for {txn.id}: {done.describe()}")
    return DECLINED
