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

from qpsmtpd_stdio import DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO
from qpsmtpd_stdio.digits import number


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
    if plugin.is_naughty() or plugin.too_big(txn, number(opts["max_size"])):
        return DECLINED
    from qpsmtpd_stdio import rspamdclient  # the protocol's module, only for a message that is scanned

    try:
        answer = rspamdclient.check(opts["address"], number(opts["timeout"]), plugin.connection, txn,
                                    me=(plugin.config("me") or [""])[0], settings_id=opts.get("settings_id", ""))
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
    rspamdclient.apply_milter(plugin, txn, answer["milter"])
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
