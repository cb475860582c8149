"""random_error - fail a share of connections at random, to test clients' retries (test sites only)

Arguments: `random_error [PERCENT]` (default 1; 0 or negative: never)

Config files: none.

About PERCENT in 100 messages fail somewhere on the way: each of six steps
(connect, HELO/EHLO, MAIL, RCPT, DATA, after the data) fails with the
chance that makes the six together PERCENT. A failure is "random failure":
3 in 5 times 4xx and the session goes on, 2 in 5 times 421 and the end. The
connection note `random_fail_%` holds the rate, and other plugins may
change it, as in qpsmtpd. It never refuses with 5xx, so no mail is lost:
every client retries.

Example config/plugins line:

    random_error 5

Imports at load: random.
"""

import random

from qpsmtpd_stdio import DECLINED, DENYSOFT, DENYSOFT_DISCONNECT, LOGINFO


def register(plugin, percent="1", *rest):
    try:
        plugin.percent = float(percent) if percent.replace(".", "", 1).lstrip("-").isdigit() else 1.0
    except ValueError:
        plugin.percent = 1.0
    for hook in ("helo", "ehlo", "mail", "rcpt", "data", "data_post"):
        plugin.register_hook(hook, fail)


def hook_connect(plugin, txn):
    plugin.connection.notes["random_fail_%"] = plugin.percent
    return fail(plugin, txn)


def fail(plugin, txn, *args):
    percent = min(100.0, float(plugin.connection.notes.get("random_fail_%", plugin.percent)))
    if percent <= 0:
        return DECLINED
    survive = (1 - percent / 100) ** (1 / 6)  # six steps: (1 - x) ** 6 == 1 - percent
    if random.random() < survive:
        return DECLINED
    plugin.log(LOGINFO, f"random failure ({percent:g}%)")
    return (DENYSOFT_DISCONNECT if random.random() < 0.4 else DENYSOFT), "random failure"
