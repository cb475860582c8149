"""logging/adaptive - log more for messages that were refused, less for those accepted

Arguments (qpsmtpd's): `logging/adaptive [accept LEVEL] [reject LEVEL] [prefix TEXT]`

  accept  how much is logged about a message that is accepted (default LOGERROR)
  reject  how much is logged about a refusal (default LOGWARN)
  prefix  put before each line written for an accepted message (default a backquote)

LEVEL is 0-7 or a name (LOGINFO). Lines are held until the outcome is known:
a refusal (any hook's DENY...) writes what was held up to `reject`; a
queued message writes it up to `accept`; what is left at the end of the
connection is written up to `accept`. Lines go to standard error, as with
logging/warn, and nowhere when that is the client's socket (under inetd).
(qpsmtpd 0.94's version writes the `reject` lines at once either way, and
the `accept` lines again on every RSET.)

Example config/logging line:

    logging/adaptive accept LOGINFO reject LOGWARN

Imports at load: none beyond the core.
"""

import os
import stat

from qpsmtpd_stdio import DECLINED, LOGERROR, LOGWARN
from qpsmtpd_stdio.constants import LOG_LEVEL_NAMES
from qpsmtpd_stdio.digits import number


def level(value, default):
    if value is None:
        return default
    found = number(value, 7)
    return found if found is not None else LOG_LEVEL_NAMES.get(value.upper(), default)


def register(plugin, *args):
    opts = plugin.options()
    plugin.accept = level(opts.get("accept"), LOGERROR)
    plugin.reject = level(opts.get("reject"), LOGWARN)
    plugin.prefix = opts.get("prefix", "`")
    plugin.held = []
    try:
        plugin.silent = stat.S_ISSOCK(os.fstat(2).st_mode)
    except OSError:
        plugin.silent = True


def flush(plugin, threshold, prefix=""):
    for lvl, text in plugin.held:
        if lvl <= threshold and not plugin.silent:
            try:
                os.write(2, f"{os.getpid()} {prefix}{text}\n".encode("utf-8", "backslashreplace"))
            except OSError:
                pass
    plugin.held = []


def hook_logging(plugin, txn, lvl, hook, plugin_name, message):
    if plugin_name != plugin.name and lvl <= max(plugin.accept, plugin.reject) and len(plugin.held) < 10000:
        plugin.held.append((lvl, f"{plugin_name + ' plugin: ' if plugin_name else ''}{message}"))
    return DECLINED


def hook_deny(plugin, txn, hook, code, message, plugin_name):
    flush(plugin, plugin.reject)


def hook_queue_post(plugin, txn):
    flush(plugin, plugin.accept, plugin.prefix + " ")


def hook_disconnect(plugin, txn):
    flush(plugin, plugin.accept, plugin.prefix + " ")
