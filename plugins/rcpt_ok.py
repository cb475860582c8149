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
"""

import os

from qpsmtpd_stdio import DENY, DENYSOFT, LOGERROR, OK

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


def is_local(plugin, host):
    host = host.lower()
    if not host:
        return False
    me = (plugin.config("me") or [os.uname().nodename])[0].lower()  # the core's default for `me`
    if host == me:
        return True
    for entry in plugin.config("rcpthosts") + plugin.config("morercpthosts"):
        entry = entry.split()[0].lower().lstrip("@")
        if entry.startswith("."):
            if host.endswith(entry):
                return True
        elif host == entry:
            return True
    cdb = plugin.config_file("morercpthosts.cdb")
    return in_cdb(plugin, cdb, host) if cdb else False


def in_cdb(plugin, path, host):
    """Is `host` a key of qmail's morercpthosts.cdb? None (logged) if the file cannot be read."""
    try:
        import cdblib

        with cdblib.Reader(file_path=path) as reader:  # mmap'd: a lookup reads a few slots, not the file
            return reader.get(host.encode("idna" if not host.isascii() else "ascii")) is not None
    except Exception as exc:  # missing library, unreadable or damaged file: 451, never a bounce
        plugin.log(LOGERROR, f"cannot read {path}: {exc}" + (" (pip install 'qpsmtpd-stdio[cdb]')"
                                                               if isinstance(exc, ImportError) else ""))
        return None
