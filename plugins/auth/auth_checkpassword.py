"""auth/auth_checkpassword - AUTH PLAIN and LOGIN with a DJB checkpassword program (vchkpw, checkpassword-pam...)

Arguments (qpsmtpd's): `auth/auth_checkpassword checkpw PATH true PATH [timeout SECONDS]`
  checkpw  the checkpassword program
  true     the program it runs on success (usually /bin/true)
  timeout  seconds the program may take (default 10); then it is killed and
           the client gets 454 (try again)

Config files:
  smtpauth-checkpassword  `CHECKPW TRUE` on one line, used when the
                          arguments are not given (qpsmtpd's file)

The program is run as `CHECKPW TRUE` with `user\\0password\\0timestamp\\0` on
fd 3 (the checkpassword interface); stdin, stdout and stderr are /dev/null,
and nothing of it reaches a log line. Exit 0: accepted (OK); exit 111, or
killed: a temporary failure (454); anything else: DECLINED (a later auth
plugin may know the user; with none, 535). CRAM-MD5 is not offered by this
plugin: checkpassword needs the password itself. The program runs as the
server's user: make it setuid, or give `/usr/bin/sudo -C4 ...` as its path
(sudo must keep fd 3).

If the programs are not executable the plugin logs an error and AUTH is not
offered through it.

Example config/plugins line:
  auth/auth_checkpassword checkpw /usr/local/vpopmail/bin/vchkpw true /bin/true

Imports at load: none beyond the core.
"""

import os

from qpsmtpd_stdio import DECLINED, DENYSOFT, LOGERROR, LOGINFO, LOGNOTICE, OK

TEMPORARY = 111  # checkpassword's "temporary problem"


def register(plugin, *args):
    opts = plugin.options({"timeout": "10"})
    checkpw, true = opts.get("checkpw"), opts.get("true")
    if not (checkpw and true):
        words = " ".join(plugin.config("smtpauth-checkpassword")).split()
        checkpw, true = (words + [None, None])[:2]
    if not (checkpw and true and os.access(checkpw, os.X_OK) and os.access(true, os.X_OK)):
        plugin.log(LOGERROR, "disabled: give `checkpw PATH true PATH` (executables) or config/smtpauth-checkpassword")
        return
    plugin.command = [checkpw, true]
    plugin.timeout = float(opts["timeout"])
    plugin.register_hook("auth_plain", check)
    plugin.register_hook("auth_login", check)


def check(plugin, txn, mechanism, user, password, password_hash, ticket):
    if password is None:
        return DECLINED
    import subprocess
    import time

    data = b"%s\0%s\0%d\0" % (user.encode("utf-8", "surrogateescape"), password.encode("utf-8", "surrogateescape"),
                              int(time.time()))
    read_end, write_end = os.pipe()

    def on_fd_3():  # in the child, before exec: the pipe becomes fd 3
        if read_end != 3:
            os.dup2(read_end, 3)
        os.set_inheritable(3, True)

    try:
        proc = subprocess.Popen(plugin.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, pass_fds=(3,), preexec_fn=on_fd_3)
    except OSError as exc:
        os.close(read_end)
        os.close(write_end)
        plugin.log(LOGERROR, f"cannot run {plugin.command[0]}: {exc}")
        return DENYSOFT
    os.close(read_end)
    try:
        os.write(write_end, data)  # far below a pipe's buffer: never blocks
    except OSError:
        pass  # the program did not read: its exit status says why
    finally:
        os.close(write_end)
    try:
        status = proc.wait(plugin.timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        plugin.log(LOGERROR, f"{plugin.command[0]} took longer than {plugin.timeout:g}s; killed")
        return DENYSOFT
    if status == 0:
        plugin.log(LOGINFO, f"pass: {mechanism}")
        return OK, "auth_checkpassword"
    if status == TEMPORARY or status < 0:
        plugin.log(LOGNOTICE, f"{plugin.command[0]} failed temporarily (status {status})")
        return DENYSOFT
    plugin.log(LOGINFO, f"fail: status {status}")
    return DECLINED
