"""rcpt_ok - accept recipients in our own domains, and anything from relay clients

Arguments: none.

Config files:
  me              our host name (default: the system's); always a local domain
  rcpthosts       local domains, one a line: `example.com`, or `.example.com`
                  for every subdomain of it (qmail syntax); `@domain` entries
                  as qpsmtpd allows are read as `domain`
  morercpthosts   more domains, same syntax, as a plain file
  morercpthosts.cdb  qmail's form of it (qmail-newmrh): each domain exactly,
                  no `.suffix` entries. Read with pure-cdb
                  (`pip install 'qpsmtpd-stdio[cdb]'`), imported only when the
                  file exists; if it cannot be read, a domain not found
                  elsewhere gets 450, never 550, so no mail for it bounces

A relay client (plugin `relay`, or RELAYCLIENT in the environment) or an
authenticated user may send to any domain. Anyone else gets
`550 Relaying denied` for a domain that is not local, and for local
addresses that try source-routing tricks (`user%other@local`,
`other!user@local`, a quoted `"user@other"@local`), which a downstream MTA
might forward. `postmaster@` a local domain is always accepted.

List it as the LAST rcpt plugin: it accepts, so plugins after it never run.

Example config/plugins line:

    rcpt_ok

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DENY, DENYSOFT, OK
from qpsmtpd_stdio.localdomains import is_local

_ROUTING = ("%", "!", "@")


def hook_rcpt(plugin, txn, rcpt, params):
    conn = plugin.connection
    if conn.relay_client or conn.auth_user:
        return OK
    local = is_local(plugin, rcpt.host)
    if local is None:
        return DENYSOFT, "4.3.0 Cannot read the list of local domains; try again later"
    if local:
        if rcpt.user.lower() == "postmaster":
            return OK
        if any(c in rcpt.user for c in _ROUTING):
            return DENY, "Relaying denied (#5.7.1)"
        return OK
    return DENY, "Relaying denied (#5.7.1)"
