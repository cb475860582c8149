"""logging/file - append log lines to a file

Arguments: `logging/file [loglevel LEVEL] [reopen] [nosplit] [tsformat FORMAT] PATH`

  loglevel  the highest level written, a number 0-7 or a name (LOGEMERG,
            LOGALERT, LOGCRIT, LOGERROR, LOGWARN, LOGNOTICE, LOGINFO,
            LOGDEBUG); default LOGWARN.
  reopen    accepted for qpsmtpd configs. Every connection is a new process
            that opens the file afresh, which is what it asks for.
  nosplit   keep one session's lines in one file: PATH is expanded once, at
            the first line, even if its strftime escapes change later.
  tsformat  strftime(3) format of the time stamp at the start of each line;
            default `%a %b %d %T %Y` (as Perl's scalar localtime).
  PATH      the file, created (mode 0640) if missing, else appended to.
            strftime escapes are expanded in local time
            (`/var/log/qpsmtpd/%Y-%m-%d.log`), and the file is switched when
            the expansion changes (unless nosplit); %i is the connection id,
            giving one file per session. `|command` pipes the lines to a
            shell command started at the first line instead.

Config files: none; list it in config/logging (loaded before config/plugins,
so it also sees plugin loading) or in config/plugins.

Each line is `TIMESTAMP HOST[PID]: (hook) plugin: message`, written with one
write(2) on a file opened with O_APPEND, so any number of concurrent
sessions can share the file without mixing their lines. (qpsmtpd leaves the
hook and plugin out; they are kept here, as logging/warn and the default log
show them.) The file cannot be opened: one error goes to the default log
(stderr, or syslog under inetd) and the lines are dropped.

Example config/logging line:

    logging/file loglevel LOGINFO /var/log/qpsmtpd-stdio.log

Imports at load: none beyond the core.
"""

import os
import re
import time

from qpsmtpd_stdio import LOGERROR, LOGWARN
from qpsmtpd_stdio.digits import number

_LEVELS = {"LOGEMERG": 0, "LOGALERT": 1, "LOGCRIT": 2, "LOGERROR": 3, "LOGWARN": 4, "LOGNOTICE": 5, "LOGINFO": 6,
           "LOGDEBUG": 7}


def register(plugin, *args):
    args = list(args)
    plugin.level, plugin.nosplit, plugin.tsformat = LOGWARN, False, "%a %b %d %T %Y"
    while args:
        word = args[0].lower()
        if word == "loglevel" and len(args) > 1:
            plugin.level = parse_level(args[1])
            del args[:2]
        elif word == "tsformat" and len(args) > 1:
            plugin.tsformat = args[1]
            del args[:2]
        elif word in ("reopen", "nosplit"):
            plugin.nosplit |= word == "nosplit"
            del args[0]
        else:
            break
    if not args:
        raise ValueError("logging/file needs a PATH argument")
    plugin.target = " ".join(args)
    plugin.fd, plugin.opened, plugin.broken = None, None, False
    plugin.prefix = f"{os.uname().nodename}[{os.getpid()}]: "
    plugin.probe = lambda: probe(plugin)


def probe(plugin):
    """For --check: can this user append to the log file? (It is created if missing, as a session would.)"""
    target = expand(plugin, plugin.target)
    if target.startswith("|"):
        return []
    try:
        os.close(os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640))
    except OSError as exc:
        return [f"cannot write the log file {target}: {exc.strerror}; its lines would be lost"]
    return []


def parse_level(text):
    if number(text) is not None:
        return min(number(text), 7)
    if text.upper() in _LEVELS:
        return _LEVELS[text.upper()]
    raise ValueError(f"logging/file: unknown loglevel {text!r}")


def hook_logging(plugin, txn, level, hook, plugin_name, message):
    if level > plugin.level or plugin_name == plugin.name or plugin.broken:
        return
    if plugin.fd is None or not plugin.nosplit:
        target = expand(plugin, plugin.target)
        if target != plugin.opened and not open_target(plugin, target):
            return
    where = f"({hook}) " if hook else ""
    if plugin_name:
        where += f"{plugin_name}: "
    line = f"{time.strftime(plugin.tsformat)} {plugin.prefix}{where}{message}\n"
    try:
        os.write(plugin.fd, line.encode("utf-8", "backslashreplace"))
    except OSError as exc:
        fail(plugin, f"cannot write to {plugin.opened}: {exc.strerror}")


def expand(plugin, target):
    """PATH with %i (the connection id) and the strftime escapes filled in."""
    if "%" not in target:
        return target
    session = getattr(plugin.connection, "id", "") or str(os.getpid())
    target = re.sub(r"%[%i]", lambda m: "%%" if m.group() == "%%" else session.replace("%", ""), target)
    return time.strftime(target)


def open_target(plugin, target):
    old = plugin.fd
    try:
        if target.lstrip().startswith("|"):
            import subprocess

            # Never let the command inherit fd 1 or 2: under inetd both are the client's socket.
            pipe = subprocess.Popen(target.lstrip()[1:], shell=True, stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            plugin.fd = os.dup(pipe.stdin.fileno())
            pipe.stdin.close()
        else:
            plugin.fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError as exc:
        fail(plugin, f"cannot open {target}: {exc.strerror}")
        return False
    plugin.opened = target
    if old is not None:
        os.close(old)
    return True


def fail(plugin, message):
    """Say once, in the default log, that this log is lost."""
    plugin.broken = True
    plugin.log(LOGERROR, message)
