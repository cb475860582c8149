"""bogus_bounce - refuse a bounce that cannot be one

Arguments (qpsmtpd's): `bogus_bounce [log|deny|denysoft]`, or `bogus_bounce [reject 0|1|naughty] [reject_type TYPE]`

  log       only log a bogus bounce (the default, as qpsmtpd)
  deny      refuse it with 554
  denysoft  refuse it with 451

Config files: none.

After the data, a message with the null sender (`MAIL FROM:<>`, a bounce)
is bogus if it has more than one recipient (a real bounce goes back to the
one sender) or a Return-Path field that is not empty (RFC 3834 3.1.8).
Spam sent as fake bounces fails one or the other.

Example config/plugins line:

    bogus_bounce deny

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, LOGINFO

ACTIONS = {"log": {"reject": "0"}, "deny": {"reject": "1", "reject_type": "perm"},
           "denysoft": {"reject": "1", "reject_type": "temp"}}


def register(plugin, *args):
    if len(args) % 2:  # one word first: the action
        plugin.opts = dict(ACTIONS.get(args[0].lower(), ACTIONS["log"]), **plugin.options(start=1))
        if args[0].lower() not in ACTIONS:
            plugin.log(LOGINFO, f"unknown action {args[0]!r}; logging only")
    else:
        plugin.opts = plugin.options({"reject": "0"})


def hook_data_post(plugin, txn):
    if not txn.sender.is_null:
        return DECLINED
    if len(txn.recipients) != 1:
        return plugin.get_reject("This bounce message does not have 1 recipient",
                                 f"bogus bounce to {len(txn.recipients)} recipients", enhanced="7.1")
    return_path = (txn.header.get("Return-Path") or "").strip()
    if return_path and return_path != "<>":
        return plugin.get_reject("A bounce return path must be empty (RFC 3834)", "bounce with a Return-Path",
                                 enhanced="7.1")
    plugin.log(LOGINFO, "pass, a bounce to one recipient, no Return-Path")
    return DECLINED
