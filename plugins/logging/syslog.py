"""logging/syslog - send log lines to syslog

Arguments: `logging/syslog [loglevel LEVEL] [priority PRIORITY] [ident IDENT] [facility FACILITY] [logsock TYPES]`

  loglevel  the highest level sent, a number 0-7 or a name (LOGWARN,
            LOGINFO...); default LOGWARN.
  priority  send every line at this syslog priority (LOG_NOTICE, or 0-7)
            instead of the one matching its level (LOGERROR -> LOG_ERR...).
  ident     the syslog tag; default `qpsmtpd`.
  facility  LOG_MAIL (default), LOG_LOCAL0..7, LOG_DAEMON, LOG_USER...; the
            LOG_ prefix may be left out (`mail`, `local3`).
  logsock   accepted for qpsmtpd configs and ignored: lines always go to the
            local syslog socket (/dev/log), through syslog(3).

Config files: none; list it in config/logging (loaded before config/plugins,
so it also sees plugin loading) or in config/plugins.

Lines are sent with the process id (LOG_PID) as `(hook) plugin: message`.
If no syslog daemon listens, the lines are lost silently.

Example config/logging line:

    logging/syslog loglevel LOGINFO facility mail

Imports at load: syslog.
"""

import syslog

from qpsmtpd_stdio.digits import number

_LEVELS = {"LOGEMERG": 0, "LOGALERT": 1, "LOGCRIT": 2, "LOGERROR": 3, "LOGWARN": 4, "LOGNOTICE": 5, "LOGINFO": 6,
           "LOGDEBUG": 7}
_PRIORITIES = ("LOG_EMERG", "LOG_ALERT", "LOG_CRIT", "LOG_ERR", "LOG_WARNING", "LOG_NOTICE", "LOG_INFO", "LOG_DEBUG")


def register(plugin, *args):
    if len(args) % 2:
        raise ValueError("logging/syslog: arguments come in `key value` pairs")
    opts = plugin.options({"loglevel": "LOGWARN", "ident": "qpsmtpd", "facility": "LOG_MAIL"})
    plugin.level = _level(opts["loglevel"])
    plugin.priority = _constant(opts["priority"], "priority") if "priority" in opts else None
    facility = _constant(opts["facility"], "facility")
    syslog.openlog(opts["ident"], syslog.LOG_PID, facility)


def hook_logging(plugin, txn, level, hook, plugin_name, message):
    if level > plugin.level or plugin_name == plugin.name:
        return
    where = f"({hook}) " if hook else ""
    if plugin_name:
        where += f"{plugin_name}: "
    priority = plugin.priority if plugin.priority is not None else getattr(syslog, _PRIORITIES[min(level, 7)])
    syslog.syslog(priority, where + message)


def _level(text):
    if number(text) is not None:
        return min(number(text), 7)
    if text.upper() in _LEVELS:
        return _LEVELS[text.upper()]
    raise ValueError(f"logging/syslog: unknown loglevel {text!r}")


def _constant(text, what):
    """LOG_NOTICE, notice, local3 or a number -> the syslog module's value."""
    if number(text) is not None:
        return number(text)
    name = text.upper() if text.upper().startswith("LOG_") else "LOG_" + text.upper()
    name = {"LOG_ERROR": "LOG_ERR", "LOG_WARN": "LOG_WARNING"}.get(name, name)
    if not isinstance(getattr(syslog, name, None), int) or name in ("LOG_PID", "LOG_CONS", "LOG_NDELAY"):
        raise ValueError(f"logging/syslog: unknown {what} {text!r}")
    return getattr(syslog, name)
