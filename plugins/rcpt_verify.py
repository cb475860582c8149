"""rcpt_verify - ask the mailbox server, at RCPT time, whether it would take each local recipient

Arguments: `rcpt_verify lmtp:HOST:PORT | lmtp:unix:/PATH | smtp:HOST:PORT [positive_ttl S] [negative_ttl S]
[timeout S] [store URL]`

  lmtp:...       the LMTP server the mail goes to (Dovecot: `lmtp:unix:/var/run/dovecot/lmtp`)
  smtp:...       an SMTP server that knows its recipients (Postfix with
                 relay_recipient_maps or local users)
  positive_ttl   seconds an accepted recipient is remembered (default 86400)
  negative_ttl   seconds a refused one is remembered (default 3600)
  timeout        seconds for the connect and each reply (default 10)
  store          a Redis URL, as greylisting's (default: config `store`, else SQLite)

Postfix's reject_unverified_recipient, for a server in front of the mailbox
server: list it before rcpt_ok, and point it at the place the queue plugin
delivers to (queue/lmtp or queue/smtp-forward with the same address), so the
recipients it accepts are the ones the delivery will find.

For each recipient in a local domain (me, rcpthosts, morercpthosts) from a
client that is not a relay client, it asks with `MAIL FROM:<>` and
`RCPT TO:<recipient>` on one connection kept for the whole session (RSET
between messages, QUIT at the end), and never sends DATA. The downstream's
answer:
  2xx            DECLINED: the plugins after it decide (rcpt_ok accepts)
  5xx            550 5.1.1 the recipient does not exist here
  4xx, or down   450 4.1.1 the client retries later
Answers are cached in the store (table rcpt_verify, keyed by the
downstream and the address) for positive_ttl or negative_ttl; 4xx and
failures are not cached. Relay clients' recipients and other domains are
left alone.

Example config/plugins line:

    rcpt_verify lmtp:unix:/var/run/dovecot/lmtp negative_ttl 600

Imports at load: qpsmtpd_stdio.smtpclient.
"""

from qpsmtpd_stdio import DECLINED, DENY, DENYSOFT, LOGINFO, LOGWARN
from qpsmtpd_stdio.digits import number


def register(plugin, where=None, *args):
    from qpsmtpd_stdio.smtpclient import parse_address

    kind, _, rest = (where or "").partition(":")
    if kind not in ("lmtp", "smtp") or not rest:
        raise ValueError("rcpt_verify needs lmtp:HOST:PORT, lmtp:unix:/PATH or smtp:HOST:PORT")
    plugin.lmtp = kind == "lmtp"
    plugin.address = parse_address(rest, 24 if plugin.lmtp else 25)
    plugin.where = where
    plugin.opts = plugin.options({"positive_ttl": "86400", "negative_ttl": "3600", "timeout": "10"}, start=1)
    for name in ("positive_ttl", "negative_ttl", "timeout"):
        if number(plugin.opts[name]) is None:
            raise ValueError(f"{name} must be a whole number of seconds, not {plugin.opts[name]!r}")
    plugin.client = None


def hook_rcpt(plugin, txn, rcpt, params):
    from qpsmtpd_stdio.localdomains import is_local

    if plugin.connection.relay_client or plugin.is_immune(txn, quiet=True) or not is_local(plugin, rcpt.host):
        return DECLINED
    import time

    key = f"{plugin.where} {rcpt.address.lower()}"
    cached = _cache(plugin, lambda db: db.get("rcpt_verify", key, ("code", "checked")))
    if cached and time.time() - cached[1] < number(plugin.opts["positive_ttl" if cached[0] < 400 else "negative_ttl"]):
        code = int(cached[0])
        plugin.log(LOGINFO, f"{rcpt.address}: {code} from the cache")
    else:
        code, text = _ask(plugin, rcpt)
        if code is None:
            plugin.log(LOGWARN, f"{plugin.where}: {text}; {rcpt.address} deferred")
            return DENYSOFT, f"4.1.1 <{rcpt.address}>: cannot verify the recipient now, try again later"
        if code < 400 or code >= 500:
            now, ttl = time.time(), number(plugin.opts["positive_ttl" if code < 400 else "negative_ttl"])
            _cache(plugin, lambda db: db.update("rcpt_verify", key, ("code", "checked"),
                                                lambda row: ((code, now), now + ttl, None)))
        plugin.log(LOGINFO, f"{rcpt.address}: {plugin.where} said {code} {text}")
    if code < 400:
        return DECLINED
    if code >= 500:
        return DENY, f"5.1.1 <{rcpt.address}>: Recipient address rejected: User unknown"
    return DENYSOFT, f"4.1.1 <{rcpt.address}>: Recipient address verification failed, try again later"


def _ask(plugin, rcpt):
    """(code, text) of the downstream's answer to RCPT TO, on the session's connection; (None, why) on failure."""
    from qpsmtpd_stdio.smtpclient import Client, DownstreamError

    try:
        if plugin.client is None:
            plugin.client = Client.connect(plugin.address, number(plugin.opts["timeout"]), lmtp=plugin.lmtp)
            plugin.client.greeting()
            plugin.client.hello((plugin.config("me") or ["localhost"])[0])
            plugin.client.expect("MAIL FROM:<>", "MAIL")
        reply = plugin.client.command(f"RCPT TO:<{rcpt.address}>", "RCPT")
        return reply.code, reply.text
    except (DownstreamError, ValueError) as exc:
        _close(plugin, quit=False)
        return None, f"{getattr(exc, 'stage', 'RCPT')}: {getattr(exc, 'detail', '') or exc}"


def _cache(plugin, action):
    from qpsmtpd_stdio.store import with_store

    return with_store(plugin, ("rcpt_verify",), action, "recipient verification not cached",
                      url=plugin.opts.get("store"))


def _close(plugin, quit: bool = True) -> None:
    if plugin.client is not None:
        plugin.client.close(quit=quit)
        plugin.client = None


def hook_disconnect(plugin, txn):
    _close(plugin)
    return DECLINED
