"""auth/require_auth - mail only from clients that authenticated (the submission port, RFC 6409)

Arguments: none. Config files: none.

MAIL from a client that has not authenticated (AUTH, RFC 4954) is answered
`530 5.7.0 Authentication required`, and no transaction starts, so nothing
reaches RCPT or DATA. An authenticated client is a relay client: with
`rcpt_ok` it may send anywhere. See docs/submission.md for the whole
submission profile (port 587, TLS before AUTH).

Example config/plugins line (before rcpt_ok):
  auth/require_auth
"""

from qpsmtpd_stdio import DECLINED, DONE, LOGINFO


def hook_mail(plugin, txn, sender, params):
    if plugin.connection.auth_user:
        return DECLINED
    plugin.log(LOGINFO, f"MAIL FROM {sender} without AUTH refused")
    return DONE, "530 5.7.0 Authentication required"
