"""auth/authdeny - answer every AUTH with "no" (qpsmtpd's proof of concept)

Arguments: none. Config files: none.

Its generic `auth` hook makes AUTH available with every mechanism (PLAIN,
LOGIN, CRAM-MD5), and it declines every user: with no other auth plugin,
every attempt gets 535 (and counts toward max_auth_failures). Listed after a
real auth plugin it changes nothing. Not for production.

Example config/plugins line:
  auth/authdeny

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, LOGWARN


def hook_auth(plugin, txn, mechanism, user, password, password_hash, ticket):
    plugin.log(LOGWARN, "fail: cannot authenticate")
    return DECLINED, f"{user} is not free to abuse my relay"
