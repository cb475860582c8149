"""logging/warn - write log lines to standard error

Arguments: `logging/warn [LEVEL]`

  LEVEL  the highest level written, a number 0-7 or a name (LOGWARN,
         LOGINFO...); default LOGWARN.

Config files: none; list it in config/logging or config/plugins.

Writes `PID (hook) plugin: message` lines to fd 2, as the built-in log
does. It never writes to a socket: under inetd and xinetd fd 2 is the
client's connection, and there it stays silent (use logging/syslog or
logging/file instead).

Example config/logging line:

    logging/warn LOGINFO

Imports at load: none beyond the core.
"""

import os
import stat

from qpsmtpd_stdio.digits import number
from qpsmtpd_stdio.log import format_line

_LEVELS = {"LOGEMERG": 0, "LOGALERT": 1, "LOGCRIT": 2, "LOGERROR": 3, "LOGWARN": 4, "LOGNOTICE": 5, "LOGINFO": 6,
           "LOGDEBUG": 7}


def register(plugin, level="LOGWARN", *rest):
    if number(level) is not None:
        plugin.level = min(number(level), 7)
    elif level.upper() in _LEVELS:
        plugin.level = _LEVELS[level.upper()]
    else:
        raise ValueError(f"logging/warn: unknown loglevel {level!r}")
    plugin.silent = fd2_is_socket()


def fd2_is_socket():
    try:
        return stat.S_ISSOCK(os.fstat(2).st_mode)
    except OSError:
        return True  # no fd 2 at all: nowhere to write


def hook_logging(plugin, txn, level, hook, plugin_name, message):
    if plugin.silent or level > plugin.level or plugin_name == plugin.name:
        return
    try:
        os.write(2, (format_line(message, plugin_name, hook) + "\n").encode("utf-8", "backslashreplace"))
    except OSError:
        pass
