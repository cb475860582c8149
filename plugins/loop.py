"""loop - refuse a message that has been through too many hops

Arguments: `loop [MAX]`

  MAX  the most hops allowed (default 100, as qmail-smtpd). A message whose
       header has MAX or more `Received:` and `Delivered-To:` fields in all
       (our own Received: included, as in qpsmtpd) is refused after the data
       with "554 5.4.6 Too many hops".

Config files: none.

A crude but effective guard against mail loops: every relay adds a Received:
field and every local delivery a Delivered-To:, so a looping message grows
until it hits the limit.

Example config/plugins line:

    loop 100

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, DENY, LOGINFO, LOGWARN

DEFAULT = 100


def register(plugin, limit=None, *rest):
    plugin.max_hops = plugin.whole_number(limit, DEFAULT, "max_hops")
    if rest:
        plugin.log(LOGWARN, "ignoring additional arguments")


def hook_data_post(plugin, txn):
    hops = txn.header.count("Received") + txn.header.count("Delivered-To")
    if hops >= plugin.max_hops:
        plugin.log(LOGINFO, f"fail, {hops} hops (limit {plugin.max_hops})")
        return DENY, "5.4.6 Too many hops"
    return DECLINED
