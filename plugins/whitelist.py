"""whitelist - let listed hosts, HELO names, senders and recipients past the checks after it

Arguments: `whitelist` (qpsmtpd's `per_recipient` and `merge` are not supported: logged, ignored)

Config files:
  whitelisthosts    client addresses: an IP, a prefix (`192.168.`), or CIDR
                    (the one matcher for every address list, netlist.py)
  whitelisthelo     HELO/EHLO names, any case
  whitelistsenders  envelope senders: `user@example.org`, or a domain
  whitelistrcpt     recipients: `postmaster@example.org`, or a domain
WHITELISTCLIENT in the environment (tcprules sets it) whitelists the client too.

As in qpsmtpd, a match answers OK, so the plugins listed after this one do
not run for that hook: a whitelisted host skips the later connect checks
(dnsbl...), a whitelisted HELO the later helo checks, a whitelisted sender
the later mail checks (badmailfrom...). The connection notes
`whitelisthost` and `whitelisthelo` and the transaction note
`whitelistsender` are set, and plugins that honour them (greylisting,
karma, spamassassin...: `is_immune`) skip their checks later too.

A whitelisted recipient is accepted at once, but only in a domain this
server takes mail for (me, rcpthosts, morercpthosts): a list can never open
a relay. The transaction note `whitelistrcpt` counts them.

List it early, before the checks it should let clients past.

Example config/plugins line:

    whitelist

Imports at load: none beyond the core.
"""

import os

from qpsmtpd_stdio import DECLINED, LOGINFO, LOGWARN, OK
from qpsmtpd_stdio.localdomains import is_local
from qpsmtpd_stdio.netlist import NetList


def register(plugin, *args):
    for unsupported in ("per_recipient", "merge"):
        if unsupported in plugin.options():
            plugin.log(LOGWARN, f"argument {unsupported} is not supported here; ignored")
    plugin.register_hook("ehlo", hook_helo)


def hook_connect(plugin, txn):
    conn = plugin.connection
    if "WHITELISTCLIENT" in os.environ:
        conn.notes["whitelistclient"] = 1
        plugin.log(LOGINFO, "pass, is whitelisted client")
    elif conn.remote_ip and conn.remote_ip in NetList(plugin.config("whitelisthosts")):
        plugin.log(LOGINFO, "pass, is a whitelisted host")
    else:
        return DECLINED
    conn.notes["whitelisthost"] = 1
    conn.notes["karma"] = conn.notes.get("karma", 0) + 5
    return OK


def hook_helo(plugin, txn, host):
    if host and host.lower() in {entry.split()[0].lower() for entry in plugin.config("whitelisthelo")}:
        plugin.connection.notes["whitelisthelo"] = 1
        plugin.log(LOGINFO, f"pass, HELO {host} is in whitelisthelo")
        return OK
    return DECLINED


def listed(plugin, name, address):
    wanted = {entry.split()[0].lower() for entry in plugin.config(name)}
    return address.address.lower() in wanted or address.host.lower() in wanted


def hook_mail(plugin, txn, sender, params):
    if sender.is_null or not listed(plugin, "whitelistsenders", sender):
        return DECLINED
    txn.notes["whitelistsender"] = 1
    plugin.log(LOGINFO, f"pass, sender {sender.address} is in whitelistsenders")
    return OK


def hook_rcpt(plugin, txn, rcpt, params):
    if not rcpt.host or not listed(plugin, "whitelistrcpt", rcpt):
        return DECLINED
    if not is_local(plugin, rcpt.host):
        plugin.log(LOGWARN, f"{rcpt.address} is in whitelistrcpt, but we do not take mail for {rcpt.host}: no relaying")
        return DECLINED
    txn.notes["whitelistrcpt"] = txn.notes.get("whitelistrcpt", 0) + 1
    plugin.log(LOGINFO, f"pass, recipient {rcpt.address} is in whitelistrcpt")
    return OK
