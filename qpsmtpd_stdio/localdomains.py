"""The domains this server takes mail for: `me`, rcpthosts, morercpthosts and qmail's morercpthosts.cdb.

rcpt_ok refuses relaying by it; whitelist accepts a listed recipient only
in one of these domains, so that no list opens a relay.

    is_local(plugin, "example.org")  # True, False, or None: morercpthosts.cdb could not be read

In rcpthosts and morercpthosts an entry is a domain, or `.example.org` for
every subdomain of it (qmail's syntax; `@domain` as qpsmtpd allows is read
as `domain`). The cdb (qmail-newmrh's) holds each domain exactly; it is read
with pure-cdb, imported only when the file exists.
"""

import os

from .constants import LOGERROR


def is_local(plugin, host: str) -> bool | None:
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


def in_cdb(plugin, path: str, host: str) -> bool | None:
    """Is `host` a key of qmail's morercpthosts.cdb? None (logged) if the file cannot be read."""
    try:
        import cdblib

        with cdblib.Reader(file_path=path) as reader:  # mmap'd: a lookup reads a few slots, not the file
            return reader.get(host.encode("idna" if not host.isascii() else "ascii")) is not None
    except Exception as exc:  # a missing library, an unreadable or damaged file: deferred, never a bounce
        plugin.log(LOGERROR, f"cannot read {path}: {exc}" + (" (pip install 'qpsmtpd-stdio[cdb]')"
                                                               if isinstance(exc, ImportError) else ""))
        return None
