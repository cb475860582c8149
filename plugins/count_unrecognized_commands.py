"""count_unrecognized_commands - hang up on a client that sends too many unknown commands

Arguments: `count_unrecognized_commands [N]`

  N  how many unrecognized commands a session may send (default 4). The
     Nth is answered "521 Closing connection, N unrecognized commands.
     Perhaps you should read RFC 2821?" and the connection is closed; the
     ones before it get the usual 500.

Config files: none.

Good against spam sent through open HTTP proxies, whose requests arrive as
lines like `GET / HTTP/1.0`. The count is kept for the whole connection (in
the connection note `unrec_cmd_count`), across transactions.

Example config/plugins line:

    count_unrecognized_commands 4

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, DENY_DISCONNECT, LOGINFO, LOGWARN

DEFAULT = 4


def register(plugin, limit=None, *rest):
    plugin.limit = plugin.whole_number(limit, DEFAULT, "limit")
    if rest:
        plugin.log(LOGWARN, "ignoring additional arguments")


def hook_unrecognized_command(plugin, txn, verb, args):
    notes = plugin.connection.notes
    count = notes.get("unrec_cmd_count", 0) + 1
    notes["unrec_cmd_count"] = count
    shown = verb[:32]
    if count < plugin.limit:
        plugin.log(LOGINFO, f"'{shown}' ({count})")
        return DECLINED
    plugin.log(LOGINFO, f"fail, '{shown}' ({count})")
    return DENY_DISCONNECT, f"Closing connection, {count} unrecognized commands. Perhaps you should read RFC 2821?"
