"""queue/maildir - deliver accepted mail into a Maildir

Arguments: `queue/maildir PATH [SUBDIR_TEMPLATE [MODE]]`

  PATH              the Maildir (created with tmp/ new/ cur/ if missing).
                    A relative path is taken from the working directory.
  SUBDIR_TEMPLATE   optional, as qpsmtpd: one copy per recipient, into the
                    Maildir PATH/<template>/, where %l is the recipient's
                    local part, %d its domain and %u the whole address
                    (e.g. `%d/%l`). It must hold at least one of them.
                    In the address, lower-cased here (qpsmtpd keeps the
                    case), every character other than ASCII letters, digits
                    and - + _ . , @ = becomes `_`, as in qpsmtpd. A recipient
                    the template gives no safe path for (the bare
                    <postmaster>, which has no domain) goes to PATH itself.
  MODE              optional, as qpsmtpd: three octal digits, the mode of the
                    tmp/ new/ cur/ directories it creates; delivered files
                    get the same without execute bits (default 700: files
                    0600). Set exactly, whatever the umask.

Config files: none.

Each message is written to tmp/, fsync'd, linked into new/, and the new/
directory fsync'd before the client hears 250, so a crash never loses a
message that was acknowledged. The stored message has LF line ends, with
`Return-Path:` and one `Delivered-To:` per recipient on top, as qpsmtpd does.
Any failure answers 451 and leaves nothing in new/ for that copy (with a
template, copies already delivered for other recipients stay, and are logged).
The reply is `250 Queued! <Message-Id>`.

Example config/plugins line:

    queue/maildir /var/mail/Maildir

Imports at load: none beyond the core.
"""

import os
import time

from qpsmtpd_stdio import DECLINED, DENYSOFT, LOGERROR, LOGINFO, OK

_count = 0
_SAFE = frozenset("-+_.,@=")


def register(plugin, path=None, template=None, mode="700", *rest):
    if not path:
        raise ValueError("queue/maildir needs a Maildir path argument")
    if template is not None and not any(k in template for k in ("%l", "%d", "%u")):
        raise ValueError(f"queue/maildir: subdirectory {template!r} holds none of %l, %d, %u")
    if len(mode) not in (3, 4) or not all(c in "01234567" for c in mode):
        raise ValueError(f"queue/maildir: mode {mode!r} is not an octal number like 700")
    plugin.maildir = os.path.abspath(path)
    plugin.template = template
    plugin.dir_mode = int(mode, 8)
    plugin.file_mode = plugin.dir_mode & 0o666
    plugin.probe = lambda: probe(plugin)


def probe(plugin):
    """For --check: can this user make the Maildir and write a file into its tmp/? (The file is removed.)"""
    if plugin.template:
        return []  # one Maildir per recipient: known only when mail comes
    try:
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(plugin.maildir, sub), plugin.dir_mode, exist_ok=True)
        path = os.path.join(plugin.maildir, "tmp", f"qpsmtpd-check.{os.getpid()}")
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, plugin.file_mode))
        os.unlink(path)
        for sub in ("new", "cur"):
            if not os.access(os.path.join(plugin.maildir, sub), os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied", os.path.join(plugin.maildir, sub))
    except OSError as exc:
        return [f"cannot deliver into {exc.filename or plugin.maildir}: {exc.strerror}; every message would get 451"]
    return []


def hook_queue(plugin, txn):
    if not txn.recipients:
        return DECLINED
    delivered = []
    try:
        if plugin.template:
            copies = [(_target(plugin, rcpt), [rcpt]) for rcpt in txn.recipients]
        else:
            copies = [(plugin.maildir, txn.recipients)]
        for target, rcpts in copies:
            delivered.append(_deliver(plugin, txn, target, rcpts))
    except OSError as exc:
        # Copies already in new/ stay: unlinking them would race a reader, and
        # the client retries on 451, so the admin gets a log line.
        plugin.log(LOGERROR, f"cannot deliver to {exc.filename or plugin.maildir}: {exc.strerror or exc}"
                   + (f" (already delivered: {', '.join(delivered)})" if delivered else ""))
        return DENYSOFT, "Queuing failed - try again later"
    msg_id = txn.header.get("Message-Id") or ""
    plugin.log(LOGINFO, f"delivered {txn.id} as {', '.join(delivered)}")
    return OK, f"Queued! {msg_id}".rstrip()


def _target(plugin, rcpt):
    """PATH/<template> for `rcpt`; PATH itself when the template gives no safe subdirectory."""
    local, domain = _safe(rcpt.user.lower()), _safe(rcpt.host.lower())
    path = plugin.template.replace("%l", local).replace("%d", domain).replace("%u", f"{local}@{domain}")
    parts = path.split("/")
    if not path or any(part.strip(".") == "" for part in parts):  # empty, `..`, or a leading or doubled /
        plugin.log(LOGINFO, f"no subdirectory for {rcpt} in {plugin.template!r}: delivering to {plugin.maildir}")
        return plugin.maildir
    return os.path.join(plugin.maildir, path)


def _safe(text):
    return "".join(c if (c.isascii() and c.isalnum()) or c in _SAFE else "_" for c in text)


def _deliver(plugin, txn, maildir, rcpts):
    global _count
    for sub in ("tmp", "new", "cur"):
        path = os.path.join(maildir, sub)
        try:
            os.makedirs(path, plugin.dir_mode)
        except FileExistsError:
            continue
        os.chmod(path, plugin.dir_mode)
    _count += 1
    now = time.time()
    name = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{_count}.{_host()}"
    tmp = os.path.join(maildir, "tmp", name)
    new = os.path.join(maildir, "new", name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, plugin.file_mode)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            os.fchmod(fd, plugin.file_mode)  # exactly MODE, whatever the umask
            out.write(f"Return-Path: {txn.sender}\n".encode("utf-8"))
            for rcpt in rcpts:
                out.write(f"Delivered-To: {rcpt.address}\n".encode("utf-8"))
            txn.write_message(out, eol=b"\n")
            os.fsync(out.fileno())
        os.link(tmp, new)
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    _fsync_dir(os.path.join(maildir, "new"))
    return new


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _host():
    # Maildir names must not contain '/' or ':'.
    return os.uname().nodename.replace("/", "\\057").replace(":", "\\072") or "localhost"
