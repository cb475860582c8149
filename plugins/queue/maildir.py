"""queue/maildir - deliver accepted mail into a Maildir

Arguments: `queue/maildir PATH [SUBDIR_TEMPLATE [MODE]]`

  PATH              the Maildir (created with tmp/ new/ cur/ if missing).
                    A relative path is taken from the working directory.
  SUBDIR_TEMPLATE   optional, as qpsmtpd: one copy per recipient, into
                    PATH/<template>/ where %l is the recipient's local part,
                    %d its domain and %u the whole address, lower-cased
                    (e.g. `%d/%l`).
  MODE              optional octal file mode of the delivered file (default 0600).

Config files: none.

Each message is written to tmp/, fsync'd, linked into new/, and the new/
directory fsync'd before the client hears 250, so a crash never loses a
message that was acknowledged. The stored message has LF line ends, with
`Return-Path:` and one `Delivered-To:` per recipient on top, as qpsmtpd does.
Any failure answers 451 and leaves nothing in new/.

Example config/plugins line:

    queue/maildir /var/mail/Maildir
"""

import os
import time

from qpsmtpd_stdio import DECLINED, DENYSOFT, LOGERROR, LOGINFO, OK

_count = 0


def register(plugin, path=None, template=None, mode="0600", *rest):
    if not path:
        raise ValueError("queue/maildir needs a Maildir path argument")
    plugin.maildir = os.path.abspath(path)
    plugin.template = template
    plugin.mode = int(mode, 8)


def hook_queue(plugin, txn):
    if not txn.recipients:
        return DECLINED
    groups = {}
    for rcpt in txn.recipients:
        target = plugin.maildir
        if plugin.template:
            target = os.path.join(target, _expand(plugin.template, rcpt))
        groups.setdefault(target, []).append(rcpt)
    delivered = []
    try:
        for target, rcpts in groups.items():
            delivered.append(_deliver(plugin, txn, target, rcpts))
    except OSError as exc:
        # Some copies may already be in new/: unlinking them would race a
        # reader, and the client retries on 451, so the admin gets a log line.
        plugin.log(LOGERROR, f"cannot deliver to {exc.filename or plugin.maildir}: {exc.strerror or exc}"
                   + (f" (already delivered: {', '.join(delivered)})" if delivered else ""))
        return DENYSOFT, "Queuing failed - try again later"
    msg_id = txn.header.get("Message-Id") or ""
    plugin.log(LOGINFO, f"delivered {txn.id} as {', '.join(delivered)}")
    return OK, f"Queued! {msg_id}".rstrip()


def _expand(template, rcpt):
    local, domain = rcpt.user.lower(), rcpt.host.lower()
    path = template.replace("%l", local).replace("%d", domain).replace("%u", f"{local}@{domain}")
    if path.startswith("/") or ".." in path.split("/"):
        raise OSError(f"unsafe maildir subdirectory {path!r}")
    return path


def _deliver(plugin, txn, maildir, rcpts):
    global _count
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(maildir, sub), mode=0o700, exist_ok=True)
    _count += 1
    now = time.time()
    name = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{_count}.{_host()}"
    tmp = os.path.join(maildir, "tmp", name)
    new = os.path.join(maildir, "new", name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, plugin.mode)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            out.write(f"Return-Path: {txn.sender}\n".encode("utf-8"))
            for rcpt in rcpts:
                out.write(f"Delivered-To: {rcpt.address}\n".encode("utf-8"))
            for chunk in txn.message_chunks(eol=b"\n"):
                out.write(chunk)
            out.flush()
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
