"""dont_require_anglebrackets - accept MAIL FROM:user@example.com without the <>

Arguments: none.

Config files: none.

RFC 5321 requires the path in angle brackets (`MAIL FROM:<user@example.com>`);
some old or broken clients leave them out. This plugin puts them around a
path that lacks them, in MAIL (mail_pre) and RCPT (rcpt_pre), before the path
is parsed: `MAIL FROM:user@example.com SIZE=10` is then read as
`MAIL FROM:<user@example.com> SIZE=10`. A path already in brackets is left
alone; the result still has to be a valid address. Each fix is logged at
LOGINFO.

Example config/plugins line (before the plugins that check senders):

    dont_require_anglebrackets

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, LOGINFO, OK


def hook_mail_pre(plugin, txn, path, params):
    return _bracket(plugin, path, "MAIL")


def hook_rcpt_pre(plugin, txn, path, params):
    return _bracket(plugin, path, "RCPT")


def _bracket(plugin, path, verb):
    if path.startswith("<") and path.endswith(">"):
        return DECLINED
    plugin.log(LOGINFO, f"fail, added {verb} angle brackets")
    return OK, f"<{path}>"
