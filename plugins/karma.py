"""karma - remember how each client IP behaved; refuse the ones that were naughty

Arguments: `karma [negative N] [penalty_days D] [reject naughty|connect|1|0]
[reject_type disconnect|perm|temp|temp_disconnect] [db_dir DIR] [store URL]`

  negative      how far below zero (nice minus naughty) a client's history may
                go before a naughty connection sends it to the penalty box (1).
  penalty_days  days a client in the penalty box is refused (1; fractions allowed).
  reject        naughty (default): leave the refusal to the `naughty` plugin;
                connect or 1: refuse at connect; 0: only log.
  reject_type   disconnect (default: 554, then hang up), perm, temp, temp_disconnect.
  db_dir        where the SQLite store lives (qpsmtpd_stdio/store.py).
  store         a Redis URL shared by several MX hosts (default: config `store`).

Config file karma_tlds: `tld score` lines; a sender at that top-level domain
lowers the connection's karma by score.

The connection note `karma` starts at 0; spamassassin, virus/clamdscan, dkim
and dmarc lower or raise it, and each message queued adds 1. At disconnect
the client's record is updated: karma below -2 or a note `naughty` counts a
naughty connection, above 2 a nice one. A naughty connection that leaves nice
minus naughty at or below -negative starts a penalty (a client never nice,
below -5, gets a day more per naughty connection): every connection is then
refused ("You were naughty. You cannot connect for N more days."). At DATA,
karma below -4 is refused. The note `karma_history` (nice minus naughty) is
for other plugins. Relay clients are never judged; a record unused for a year
lapses; if the store cannot be used, nothing is refused.

Example config/plugins line (first, so later checks are skipped):

    karma penalty_days 1 reject naughty

Imports at load: none beyond the core.
"""

import time

from qpsmtpd_stdio import DECLINED, LOGINFO
from qpsmtpd_stdio.digits import number


def register(plugin, *args):
    plugin.opts = plugin.options({"negative": "1", "penalty_days": "1", "reject": "naughty", "reject_type": "disconnect"})
    plugin.negative = abs(int(plugin.opts["negative"]))
    plugin.penalty_days = float(plugin.opts["penalty_days"])
    plugin.expire_at = expire_at  # for `in.qpsmtpd --import-qpsmtpd-db karma`


FIELDS = ("penalty_start", "naughty", "nice", "connects", "last")
YEAR = 365 * 86400


def stored(plugin, why, action):
    """action(db) on the shared store; None (logged) if the store cannot be used: then nothing is refused."""
    from qpsmtpd_stdio.store import with_store

    return with_store(plugin, ("karma",), action, why, plugin.opts.get("db_dir"), plugin.opts.get("store"))


def expire_at(start, now):
    """When a record lapses: a year after the last connection, and never inside the penalty box."""
    return max(now + YEAR, start)


def hook_connect(plugin, txn):
    notes = plugin.connection.notes
    notes.setdefault("karma", 0)
    notes["karma_history"] = 0
    ip, now = plugin.connection.remote_ip, time.time()
    if plugin.is_immune() or not ip:
        return DECLINED

    def count(row):
        if row is None:
            return None, 0, None
        return (row[0], int(row[1]), int(row[2]), int(row[3]) + 1, now), expire_at(row[0], now), None

    def check(db):  # read, and count the connection if the penalty box refuses it
        row = db.get("karma", ip, FIELDS)
        if row and row[0] and (now - row[0]) / 86400 < plugin.penalty_days:
            db.update("karma", ip, FIELDS, count)
        return [row]

    found = stored(plugin, "not judged", check)
    if not found:
        return DECLINED
    if found[0] is None:
        plugin.log(LOGINFO, "pass, no record")
        return DECLINED
    start, naughty, nice, connects = found[0][0], int(found[0][1]), int(found[0][2]), int(found[0][3])
    notes["karma_history"] = nice - naughty
    if nice - naughty > 10:
        plugin.adjust_karma(1)
    summary = f"{naughty} naughty, {nice} nice, {connects} connects"
    days_old = (now - start) / 86400
    if not start or days_old >= plugin.penalty_days:
        plugin.log(LOGINFO, f"pass, {'penalty expired' if start else 'no penalty'} ({summary})")
        return DECLINED
    notes["karma_penalized"] = True  # counted here; disconnect does not count it again
    return plugin.get_reject(f"You were naughty. You cannot connect for {plugin.penalty_days - days_old:.2f} more days.",
                             f"in the penalty box ({summary})", default_type="disconnect")


def hook_mail(plugin, txn, sender, params):
    host = (sender.host or "").lower()
    for line in plugin.config("karma_tlds"):
        tld, _, score = line.partition(" ")
        points = number(score.strip().lstrip("-"))
        if host.endswith("." + tld.lower().lstrip(".")) and points is not None:
            plugin.log(LOGINFO, f"penalizing .{tld} envelope sender")
            plugin.adjust_karma(-points)
    return DECLINED


def hook_data(plugin, txn):
    if plugin.is_immune(quiet=True) or plugin.connection.notes.get("naughty"):
        return DECLINED  # the naughty plugin refuses those
    karma = plugin.connection.notes.get("karma", 0)
    if karma < -4:
        return plugin.get_reject(f"very bad karma: {karma}", "very bad karma", default_type="disconnect")
    return DECLINED


hook_data_post = hook_data


def hook_queue_post(plugin, txn):
    plugin.adjust_karma(1)


def hook_disconnect(plugin, txn):
    notes = plugin.connection.notes
    karma = notes.get("karma", 0)
    bad = karma < -2 or bool(notes.get("naughty"))
    if plugin.is_immune(quiet=True) or notes.get("karma_penalized") or not (bad or karma) \
            or not plugin.connection.remote_ip:
        return DECLINED
    now = time.time()

    change = lambda row: judge(plugin, row, bad, karma, now)  # noqa: E731
    outcome = stored(plugin, "not recorded", lambda db: db.update("karma", plugin.connection.remote_ip, FIELDS, change))
    if outcome is None:
        return DECLINED
    naughty, nice, penalized = outcome
    kind = "negative" if bad else "positive" if karma > 2 else "neutral"
    plugin.log(LOGINFO, f"{kind} (karma {karma}, {naughty} naughty, {nice} nice)"
               + (", sent to the penalty box" if penalized else ""))
    return DECLINED


def judge(plugin, row, bad, karma, now):
    """(the record after this connection, when it lapses, (naughty, nice, penalized)), for store.update()."""
    start, naughty, nice, connects = row[:4] if row else (0, 0, 0, 0)
    naughty, nice, connects = int(naughty), int(nice), int(connects)
    penalized = False
    if bad:
        naughty += 1
        history = nice - naughty
        if history <= -plugin.negative:
            penalized = True
            start = now + (abs(history) * 86400 if nice == 0 and history < -5 else 0)
    elif karma > 2:
        nice += 1
    return (start, naughty, nice, connects + 1, now), expire_at(start, now), (naughty, nice, penalized)
