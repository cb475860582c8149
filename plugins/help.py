"""help - answer HELP from text files

Arguments (qpsmtpd's): `help [not_implemented 1] [help_dir DIR] [COMMAND FILE ...]`

  not_implemented 1  HELP gets "502 Not implemented."
  help_dir DIR       `HELP MAIL` shows the file DIR/mail (default: help/ in
                     the config directory)
  COMMAND FILE       `HELP COMMAND` shows FILE (a bare name is looked up in
                     the help dir)

Config files: none (the help files above).

HELP alone gets "214 Try 'HELP COMMAND' for getting help on COMMAND". A
command name other than letters, digits and `_` gets "502 Invalid command
name", so no path can be asked for. A file is shown up to 100 lines of 500
characters.

Example config/plugins line:

    help help_dir /etc/qpsmtpd/help

Imports at load: none beyond the core.
"""

import os

from qpsmtpd_stdio import DONE, LOGWARN, OK

MAX_LINES, MAX_WIDTH = 100, 500


def register(plugin, *args):
    opts = plugin.options()
    plugin.not_implemented = opts.pop("not_implemented", "0") not in ("0", "")
    plugin.help_dir = opts.pop("help_dir", None) or os.path.join(plugin.config_dir(), "help")
    plugin.files = {}
    for command, name in opts.items():
        if not command.replace("_", "").isalnum():
            plugin.log(LOGWARN, f"invalid command name {command!r}; ignored")
            continue
        plugin.files[command.lower()] = name if "/" in name else os.path.join(plugin.help_dir, name)


def hook_help(plugin, txn, args):
    if plugin.not_implemented:
        return DONE, "502 Not implemented."
    if not args:
        return OK, "Try 'HELP COMMAND' for getting help on COMMAND"
    command = args[0].lower()
    if not (command.isascii() and command.replace("_", "").isalnum()):
        return DONE, "502 Invalid command name"
    path = plugin.files.get(command) or os.path.join(plugin.help_dir, command)
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = [line.rstrip("\n")[:MAX_WIDTH] for _, line in zip(range(MAX_LINES), fh)]
    except OSError:
        lines = []
    return OK, lines or [f"No help available for SMTP command: {command}"]
