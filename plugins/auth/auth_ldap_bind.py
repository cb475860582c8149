"""auth/auth_ldap_bind - AUTH PLAIN and LOGIN by binding to an LDAP directory as the user

Arguments (qpsmtpd's, each also a `key value` line of the config file `ldap`; arguments win):
  ldap_base              where users are searched (required)
  ldap_host, ldap_port   the directory (default 127.0.0.1 and 389)
  ldap_timeout           seconds for each step (default 5)
  ldap_auth_filter_attr  the attribute that holds the user name (default uid)

Config files: ldap (the settings above).

The user's entry is found by an anonymous search for
`(ATTR=NAME)`, NAME being the part of the AUTH user before any `@`, with
RFC 4515's escapes (a name cannot widen the search); then the server binds
as that entry's DN with the password given. Bound: OK. No such user: DECLINED
(a later auth plugin may know them); a wrong password: DENY; the client sees
535 either way. An empty password is refused before any bind (LDAP takes
it as an anonymous bind). The directory down or slow: DENYSOFT, 454, and
the failure does not count toward max_auth_failures.

The LDAP client is ldap3 (`pip install 'qpsmtpd-stdio[ldap]'`), pure Python;
it is imported only when a client authenticates (it costs ~100 ms of CPU,
as python-ldap does, which also needs a C compiler to install).
CRAM-MD5 is not offered through this plugin: a bind needs the password itself.
(qpsmtpd 0.94's plugin tested its search result with `=` for `==`, so it
never authenticated anyone.)

Example config/plugins line:
  auth/auth_ldap_bind ldap_base ou=people,dc=example,dc=org

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, DENY, DENYSOFT, LOGERROR, LOGINFO, OK
from qpsmtpd_stdio.digits import number

DEFAULTS = {"ldap_host": "127.0.0.1", "ldap_port": "389", "ldap_timeout": "5", "ldap_auth_filter_attr": "uid"}


def register(plugin, *args):
    settings = dict(DEFAULTS)
    for line in plugin.config("ldap"):
        key, _, value = line.strip().partition(" ")
        settings[key.lower()] = value.strip()
    settings.update(plugin.options())
    plugin.ldap = settings
    if not settings.get("ldap_base"):
        plugin.log(LOGERROR, "ldap_base is not set: no user can authenticate through this plugin")
    plugin.port = number(settings["ldap_port"], 65535) or 389
    plugin.timeout = number(settings["ldap_timeout"], 300) or 5  # whole seconds: ldap3 sets them on the socket


def hook_auth_plain(plugin, txn, mechanism, user, password, password_hash, ticket):
    settings = plugin.ldap
    if not settings.get("ldap_base"):
        return DECLINED
    if not password:
        plugin.log(LOGINFO, "fail: empty password")
        return DENY, "auth_ldap_bind - wrong username or password"
    try:
        import ldap3
        from ldap3.core.exceptions import LDAPException
        from ldap3.utils.conv import escape_filter_chars
    except ImportError:
        plugin.log(LOGERROR, "ldap3 is not installed (pip install 'qpsmtpd-stdio[ldap]')")
        return DENYSOFT, "Temporary authentication failure"
    name = user.split("@", 1)[0].lower()
    server = ldap3.Server(settings["ldap_host"], port=plugin.port, connect_timeout=plugin.timeout)
    try:
        with ldap3.Connection(server, receive_timeout=plugin.timeout, auto_bind=True) as anonymous:
            anonymous.search(settings["ldap_base"], f"({settings['ldap_auth_filter_attr']}={escape_filter_chars(name)})",
                             attributes=[], size_limit=2, time_limit=int(plugin.timeout))
            found = [entry.entry_dn for entry in anonymous.entries]
        if len(found) != 1:
            plugin.log(LOGINFO, f"fail: {len(found)} entries for {name!r}")
            return DECLINED
        bound = ldap3.Connection(server, user=found[0], password=password, receive_timeout=plugin.timeout)
        ok = bound.bind()
        bound.unbind()
    except LDAPException as exc:
        plugin.log(LOGERROR, f"directory {settings['ldap_host']}:{plugin.port}: {type(exc).__name__}: {exc}")
        return DENYSOFT, "Temporary authentication failure"
    if ok:
        plugin.log(LOGINFO, f"pass: bound as {found[0]}")
        return OK, "auth_ldap_bind"
    plugin.log(LOGINFO, "fail: wrong password")
    return DENY, "auth_ldap_bind - wrong username or password"


hook_auth_login = hook_auth_plain
