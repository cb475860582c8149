"""karma - remember how each client IP behaved; refuse the ones that were naughty

Arguments: `karma [negative N] [penalty_days D] [reject naughty|connect|1|0]
[reject_type disconnect|perm|temp|temp_disconnect] [db_dir DIR] [store URL]`

  negative      how far below zero (nice minus naughty connections) a
                client's history may go before a naughty connection sends
                it to the penalty box (default 1).
  penalty_days  days a client in the penalty box is refused (default 1;
                fractions allowed).
  reject        naughty (default): leave the refusal to the `naughty`
                plugin (note `naughty`); connect or 1: refuse at connect;
                0: only log.
  reject_type   disconnect (default: 554, then hang up), perm, temp,
                temp_disconnect.
  db_dir        where the store lives (qpsmtpd_stdio/store.py).
  store         a Redis URL (redis://HOST:PORT/DB) shared by several MX
                hosts (default: the config file `store`; neither: SQLite).
                A Redis record expires a year after its last use, or when
                its penalty ends if that is later.

Config files: karma_tlds - `tld score` lines: a sender at that top-level
domain lowers the connection's karma by score (none by default; qpsmtpd
0.94 has its own fixed list).

The connection note `karma` starts at 0; plugins lower or raise it
(`notes["karma"] = notes.get("karma", 0) - 1`): spamassassin, virus/clamdscan,
dkim and dmarc do, as in qpsmtpd, and karma adds 1 for each message queued
(qpsmtpd 0.94 has no such reward, so its `nice` count hardly ever grows).
At disconnect the client's record (per IP, in the shared SQLite store) is
updated: karma below -2, or a connection note `naughty` from any plugin,
counts a naughty connection; above 2 a nice one (any other non-zero karma
counts the connection only). A naughty connection that
leaves nice minus naughty at or below -negative starts a penalty; a client
that was never nice and whose history is below -5 gets one extra day per
naughty connection. During the penalty every connection is refused with
"You were naughty. You cannot connect for N more days." At DATA, karma below
-4 is refused ("very bad karma"). The note `karma_history` (nice minus
naughty) is there for other plugins. Relay clients and authenticated users
are never judged or recorded; a record unused for a year is dropped. If the
store cannot be used, nothing is refused. qpsmtpd's limit of one recipient
for unknown clients is left out.

Example config/plugins line (first, so later checks are skipped):

    karma penalty_days 1 reject naughty
"""

import time

from qpsmtpd_stdio import DECLINED, LOGERROR, LOGINFO


def register(plugin, *args):
    plugin.opts = plugin.options({"negative": "1", "penalty_days": "1", "reject": "naughty", "reject_type": "disconnect"})
    plugin.negative = abs(int(plugin.opts["negative"]))
    plugin.penalty_days = float(plugin.opts["penalty_days"])


def adjust(plugin, value):
    notes = plugin.connection.notes
    notes["karma"] = notes.get("karma", 0) + value


def open_db(plugin):
    from qpsmtpd_stdio import store

    return store.open_store(plugin, plugin.opts.get("db_dir"), ("karma",), plugin.opts.get("store"))


FIELDS = ("penalty_start", "naughty", "nice", "connects", "last")
YEAR = 365 * 86400


def expire_at(start, now):
    """When a record lapses: a year after the last connection, and never inside the penalty box."""
    return max(now + YEAR, start)


def hook_connect(plugin, txn):
    notes = plugin.connection.notes
    notes.setdefault("karma", 0)
    notes["karma_history"] = 0
    if plugin.is_immune() or not plugin.connection.remote_ip:
        return DECLINED
    from qpsmtpd_stdio import store

    db = open_db(plugin)
    if db is None:
        return DECLINED
    ip, now = plugin.connection.remote_ip, time.time()
    try:
        row = db.get("karma", ip, FIELDS)
        if row is None:
            plugin.log(LOGINFO, "pass, no record")
            return DECLINED
        start, naughty, nice, connects = row[0], int(row[1]), int(row[2]), int(row[3])
        notes["karma_history"] = history = nice - naughty
        if history > 10:
            adjust(plugin, 1)
        summary = f"{naughty} naughty, {nice} nice, {connects} connects"
        days_old = (now - start) / 86400
        if not start or days_old >= plugin.penalty_days:
            plugin.log(LOGINFO, f"pass, {'penalty expired' if start else 'no penalty'} ({summary})")
            return DECLINED

        def count(row):
            if row is None:
                return None, 0, None
            return (row[0], int(row[1]), int(row[2]), int(row[3]) + 1, now), expire_at(row[0], now), None

        db.update("karma", ip, FIELDS, count)
    except store.StoreError as exc:
        plugin.log(LOGERROR, f"store error, not judged: {exc}")
        return DECLINED
    finally:
        db.close()
    notes["karma_penalized"] = True  # counted here; disconnect does not count it again
    left = plugin.penalty_days - days_old
    return plugin.get_reject(f"You were naughty. You cannot connect for {left:.2f} more days.",
                             f"in the penalty box ({summary})", default_type="disconnect")


def hook_mail(plugin, txn, sender, params):
    host = (sender.host or "").lower()
    for line in plugin.config("karma_tlds"):
        tld, _, score = line.partition(" ")
        if host.endswith("." + tld.lower().lstrip(".")) and score.strip().lstrip("-").isdigit():
            plugin.log(LOGINFO, f"penalizing .{tld} envelope sender")
            adjust(plugin, -abs(int(score)))
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
    adjust(plugin, 1)


def hook_disconnect(plugin, txn):
    notes = plugin.connection.notes
    karma = notes.get("karma", 0)
    bad = karma < -2 or bool(notes.get("naughty"))
    if plugin.is_immune(quiet=True) or notes.get("karma_penalized") or not (bad or karma) \
            or not plugin.connection.remote_ip:
        return DECLINED
    from qpsmtpd_stdio import store

    db = open_db(plugin)
    if db is None:
        return DECLINED
    ip, now = plugin.connection.remote_ip, time.time()
    def change(row):
        new, result = judge(plugin, row, bad, karma, now)
        return new, expire_at(new[0], now), result

    try:
        naughty, nice, penalized = db.update("karma", ip, FIELDS, change)
    except store.StoreError as exc:
        plugin.log(LOGERROR, f"store error, not recorded: {exc}")
        return DECLINED
    finally:
        db.close()
    kind = "negative" if bad else "positive" if karma > 2 else "neutral"
    plugin.log(LOGINFO, f"{kind} (karma {karma}, {naughty} naughty, {nice} nice)"
               + (", sent to the penalty box" if penalized else ""))
    return DECLINED


def judge(plugin, row, bad, karma, now):
    """The record after this connection: ((penalty_start, naughty, nice, connects, last), (naughty, nice, penalized))."""
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
    return (start, naughty, nice, connects + 1, now), (naughty, nice, penalized)
