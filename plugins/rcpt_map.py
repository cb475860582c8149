"""rcpt_map - the valid recipients of one domain, from a map file

Arguments (qpsmtpd's): `rcpt_map domain NAME file MAP [default CODE[=TEXT]]`

  domain   the domain the map is for; other recipients are left to the
           plugins after this one
  file     the map: `address CODE [reply text]` lines (`#` comments); a
           relative path is in the config directory
  default  the answer for an address of that domain that is not in the map
           (default `DENY=No_such_user.`; `_` stands for a space)

CODE is OK, DENY, DENYSOFT, DECLINED, DENY_DISCONNECT or
DENYSOFT_DISCONNECT. The map is read afresh for every connection, so an
edit applies to the next one. A missing or empty map fails the plugin's
loading (every connection gets 421), as in qpsmtpd: better than taking mail
for users who do not exist. An OK is only given if this server takes mail
for the domain (me, rcpthosts, morercpthosts), so a map cannot open a relay.

Example config/plugins line (before rcpt_ok):

    rcpt_map domain example.org file map_example_org default DENY=No_such_user_here

Imports at load: none beyond the core.
"""

import os

from qpsmtpd_stdio import DECLINED, LOGWARN, OK
from qpsmtpd_stdio.constants import RETURN_CODE_NAMES
from qpsmtpd_stdio.localdomains import is_local

CODES = {name: code for code, name in RETURN_CODE_NAMES.items()}


def register(plugin, *args):
    opts = plugin.options()
    if not opts.get("domain") or not opts.get("file"):
        raise ValueError("rcpt_map needs `domain NAME` and `file MAP`")
    plugin.domain = opts["domain"].lower()
    name, _, text = opts.get("default", "DENY=No such user.").partition("=")
    if name.upper() not in CODES:
        raise ValueError(f"rcpt_map: default {name!r} is not a return code")
    plugin.default = (CODES[name.upper()], (text or "No such user.").replace("_", " "))
    path = opts["file"] if os.path.isabs(opts["file"]) else os.path.join(plugin.config_dir(), opts["file"])
    plugin.map = read_map(plugin, path)
    if not plugin.map:
        raise ValueError(f"rcpt_map: the map {path} is empty")


def read_map(plugin, path):
    found = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            address, _, rest = line.strip().partition(" ")
            if not address or address.startswith("#"):
                continue
            name, _, text = rest.strip().partition(" ")
            if name.upper() not in CODES:
                plugin.log(LOGWARN, f"{path}:{number}: {name!r} is not a return code; line skipped")
                continue
            found[address.lower()] = (CODES[name.upper()], text.strip() or "No such user.")
    return found


def hook_rcpt(plugin, txn, rcpt, params):
    if not rcpt.user or rcpt.host.lower() != plugin.domain:
        return DECLINED
    code, text = plugin.map.get(f"{rcpt.user}@{rcpt.host}".lower(), plugin.default)
    if code == OK and not plugin.connection.relay_client and not is_local(plugin, rcpt.host):
        plugin.log(LOGWARN, f"the map says OK, but we do not take mail for {rcpt.host}: no relaying")
        return DECLINED
    return (code, text) if code not in (OK, DECLINED) else code

