"""naughty - refuse, at one chosen stage, the connections other plugins marked as naughty

Arguments: `naughty [reject connect|mail|rcpt|data|data_post] [reject_type disconnect|perm|temp|temp_disconnect]`

  reject       the stage at which a naughty connection is refused (default
               rcpt). Whatever the stage, a message still gets refused at
               data_post, in case a plugin marked the connection later or an
               earlier plugin answered the stage's hook first (rcpt_ok
               accepts a recipient before a later naughty can refuse it:
               list naughty before rcpt_ok, or choose data).
  reject_type  how to refuse when the marking plugin did not say (the note
               `naughty_reject_type`): disconnect (default: the stage's 5xx
               code, then hang up), perm, temp, temp_disconnect.

Plugins with `reject naughty` (badmailfrom, badrcptto, dnsbl, fcrdns,
headers, karma...) do not refuse at once: they put their reply text in the
connection note `naughty` (several are joined with CRLF and sent as a
multi-line reply) and their reject_type in `naughty_reject_type`; this
plugin refuses with that text. A client that authenticates is forgiven, as
in qpsmtpd: its naughty note no longer counts. Heavy plugins (spamassassin,
virus/clamdscan, greylisting, dkim, dmarc) skip naughty connections.

Config files: none.

Example config/plugins line (after the plugins that mark, before rcpt_ok):

    naughty reject rcpt reject_type disconnect

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, DENY_DISCONNECT, LOGINFO, LOGWARN
from qpsmtpd_stdio.constants import REJECT_TYPES

STAGES = ("connect", "mail", "rcpt", "data", "data_post")


def register(plugin, *args):
    plugin.opts = plugin.options({"reject": "rcpt", "reject_type": "disconnect"})
    stage = plugin.opts["reject"].lower()
    if stage not in STAGES:
        plugin.log(LOGWARN, f"reject {stage!r} is not one of {', '.join(STAGES)}; refusing at data_post")
        stage = "data_post"
    plugin.stage = stage
    plugin.register_hook(stage, naughty)
    if stage != "data_post":
        plugin.register_hook("data_post", naughty)


def naughty(plugin, txn, *args):
    conn = plugin.connection
    reason = conn.notes.get("naughty")
    if not reason:
        return DECLINED
    if conn.auth_user:
        plugin.log(LOGINFO, "skip, authenticated")
        return DECLINED
    kind = str(conn.notes.get("naughty_reject_type") or plugin.opts["reject_type"]).lower()
    code = REJECT_TYPES.get(kind, REJECT_TYPES.get(plugin.opts["reject_type"].lower(), DENY_DISCONNECT))
    lines = reason.split("\r\n") if isinstance(reason, str) else ["Your connection was refused by local policy"]
    plugin.log(LOGINFO, f"fail, refusing ({kind}): {' / '.join(lines)}")
    return code, lines
