"""content_log - append every message to a file of the day, for audit or debugging

Arguments: none.

Config files:
  content_log_file     where: a path (relative: to the config directory)
                       with strftime fields (default `mail/%Y%m%d`, as
                       qpsmtpd's `mail/YYYYMMDD`)
  content_log_enabled  0 turns it off without editing config/plugins

After the data, the whole message (its header as it now stands, then the
body, LF line ends) is appended to the file, which is created 0600 with its
directory. Each message starts with a `From ` line (mbox), so the file opens
in a mail reader. A file that cannot be written is logged and the message
goes on: this is a copy, never the delivery. The messages may hold secrets:
keep the directory private.

Example config/plugins line (before the queue plugin):

    content_log

Imports at load: none beyond the core.
"""

import os
import time

from qpsmtpd_stdio import DECLINED, LOGERROR, LOGINFO


def hook_data_post(plugin, txn):
    if (plugin.config("content_log_enabled") or ["1"])[0].strip() in ("0", "no", "false", "off"):
        return DECLINED
    template = (plugin.config("content_log_file") or ["mail/%Y%m%d"])[0].strip()
    path = os.path.join(plugin.config_dir(), time.strftime(template))
    sender = txn.sender.address if txn.sender and not txn.sender.is_null else "MAILER-DAEMON"
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(f"From {sender} {time.asctime()}\n".encode())
            for chunk in txn.message_chunks(b"\n"):
                out.write(chunk)
            out.write(b"\n")
    except OSError as exc:
        plugin.log(LOGERROR, f"cannot write {path}: {exc.strerror}; the message goes on")
        return DECLINED
    plugin.log(LOGINFO, f"message copied to {path}")
    return DECLINED
