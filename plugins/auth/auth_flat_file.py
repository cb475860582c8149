"""auth/auth_flat_file - AUTH PLAIN, LOGIN and CRAM-MD5 against a file of user names and passwords

Arguments: none.

Config files:
  flat_auth_pw  one `user@domain:password` a line (qpsmtpd's file). The user
                name must have a domain, as in qpsmtpd; it is compared without
                regard to case. The password is everything after the first
                colon, in clear text (CRAM-MD5 needs it so): make the file
                readable by the server's user only.

A user not in the file is DECLINED (a later auth plugin may know them); a
wrong password is DENY. The client sees the same 535 either way, so the
reply does not tell which user names exist. Passwords are compared in
constant time.

Example config/plugins line:
  auth/auth_flat_file

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, DENY, LOGINFO, OK


def hook_auth_plain(plugin, txn, mechanism, user, password, password_hash, ticket):
    name = user.lower()
    if "@" not in name:
        plugin.log(LOGINFO, "fail: the user name has no domain")
        return DECLINED
    stored = None
    for line in plugin.config("flat_auth_pw"):
        entry, sep, secret = line.partition(":")
        if sep and entry.strip().lower() == name:
            stored = secret
            break
    if stored is None:
        plugin.log(LOGINFO, "fail: no such user")
        return DECLINED
    from qpsmtpd_stdio.auth import check_password

    if check_password(stored, password, password_hash, ticket):
        plugin.log(LOGINFO, f"pass: {mechanism}")
        return OK, "auth_flat_file"
    plugin.log(LOGINFO, "fail: wrong password")
    return DENY, "auth_flat_file - wrong password"


hook_auth_login = hook_auth_plain
hook_auth_cram_md5 = hook_auth_plain
