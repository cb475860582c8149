"""noop_counter - disconnect after too many NOOPs in a row

Arguments: `noop_counter [N]` (default 3)

Config files: none.

The Nth NOOP in a row gets "550 Stop wasting my time, too many consecutive
NOOPs" and the connection is closed. Any other command starts the count
again. List it early, so that its other hooks see every command.

Example config/plugins line:

    noop_counter 5

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, DENY_DISCONNECT, LOGWARN
from qpsmtpd_stdio.digits import number


def register(plugin, limit=None, *rest):
    plugin.limit = number(limit) if limit is not None else 3
    if not plugin.limit:
        plugin.log(LOGWARN, f"not a positive number: {limit!r}; using 3")
        plugin.limit = 3
    plugin.count = 0
    for hook in ("helo", "ehlo", "mail", "rcpt", "data", "reset_transaction", "vrfy", "help"):
        plugin.register_hook(hook, reset)


def hook_noop(plugin, txn):
    plugin.count += 1
    if plugin.count >= plugin.limit:
        return DENY_DISCONNECT, "Stop wasting my time, too many consecutive NOOPs"
    return DECLINED


def reset(plugin, txn, *args):
    plugin.count = 0
    return DECLINED
