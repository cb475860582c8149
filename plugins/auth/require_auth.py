"""auth/require_auth - mail only from clients that authenticated (the submission port, RFC 6409)

Arguments: `auth/require_auth [sender_login 1]`

  sender_login 1  an authenticated user may send only as the addresses it
                  owns, as Postfix's reject_sender_login_mismatch: any other
                  MAIL FROM gets `553 5.7.1 <address>: Sender address
                  rejected: not owned by user LOGIN`. The null sender (`<>`,
                  for bounces and receipts) is always allowed.

Config files:
  sender_login_maps  `ADDRESS LOGIN[,LOGIN...]` lines: who owns which
                     sender address; `@example.org LOGIN` owns a whole
                     domain. A login owns its own address (a login of the
                     form user@domain) even when it is not listed. Compared
                     without regard to case.

MAIL from a client that has not authenticated (AUTH, RFC 4954) is answered
`530 5.7.0 Authentication required`, and no transaction starts, so nothing
reaches RCPT or DATA. An authenticated client is a relay client: with
`rcpt_ok` it may send anywhere. See docs/submission.md for the whole
submission profile (port 587, TLS before AUTH, sender_login on).

Example config/plugins line (before rcpt_ok):
  auth/require_auth sender_login 1

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, DONE, LOGINFO


def register(plugin, *args):
    plugin.sender_login = plugin.options().get("sender_login", "0") not in ("0", "")


def hook_mail(plugin, txn, sender, params):
    login = plugin.connection.auth_user
    if not login:
        plugin.log(LOGINFO, f"MAIL FROM {sender} without AUTH refused")
        return DONE, "530 5.7.0 Authentication required"
    if not plugin.sender_login or sender.is_null or owns(plugin, login, sender):
        return DECLINED
    plugin.log(LOGINFO, f"MAIL FROM {sender} refused: not owned by {login!r}")
    return DONE, f"553 5.7.1 {sender}: Sender address rejected: not owned by user {login}"


def owns(plugin, login, sender):
    login, address, domain = login.lower(), sender.address.lower(), "@" + sender.host.lower()
    if login == address:
        return True
    for line in plugin.config("sender_login_maps"):
        key, _, owners = line.strip().partition(" ")
        if key.lower() in (address, domain) and login in {o.strip().lower() for o in owners.split(",")}:
            return True
    return False
