"""greylisting - defer mail from unknown clients; accept it when they retry

Arguments: `greylisting [remote_ip 1] [sender 0] [recipient 0] [black_timeout S] [grey_timeout S]
[white_timeout S] [reject 1] [deny_late 0] [db_dir DIR] [store redis://HOST:PORT/DB]`

  remote_ip, sender, recipient  what makes up the triplet that is tracked
                 (1 or 0). Default: the client's IP alone, as qpsmtpd:
                 once a host has retried, it is not delayed again for any
                 sender or recipient.
  black_timeout  seconds a new triplet is deferred (default 3000, 50 min).
  grey_timeout   seconds after the first attempt in which a retry is
                 accepted and the triplet whitelisted (default 12000).
  white_timeout  seconds a whitelisted triplet stays known after its last
                 delivery (default 3110400, 36 days).
  reject         1 (default): defer; 0: only record and log (for seeding).
                 `mode testonly|off` (qpsmtpd's old name) means reject 0.
  deny_late      1: defer at DATA instead of MAIL (the recipients get logged).
  db_dir         where the store lives (qpsmtpd_stdio/store.py: default
                 /var/lib/qpsmtpd, else the config directory).
  store          a Redis URL shared by several MX hosts (default: the
                 config file `store`; neither: the SQLite store).

Config files: denysoft_greylist - `key value` lines, defaults for the
arguments above (qpsmtpd's file; arguments win).

The first attempt of an unknown triplet gets 450 "This mail is temporarily
denied" (at MAIL; at RCPT when `recipient 1`, where a null sender is
deferred at DATA instead, so address probes still work). A retry after
black_timeout but within grey_timeout is accepted and whitelists the
triplet; each delivery renews it. A triplet whose window or whitelisting
ran out starts over (qpsmtpd 0.94 then accepted it unrecorded forever).
Relay clients, authenticated users, whitelisted hosts and senders and
naughty connections are not greylisted. The triplets live in the shared
SQLite store (WAL; every check is one write transaction, so concurrent
connections never lose an update); if the store cannot be used, mail is
accepted and the error logged. Expired triplets are pruned as they go
(in Redis each key expires grey_timeout, once white white_timeout, after
its timestamp; updates are WATCH/MULTI transactions).
qpsmtpd's per_recipient, p0f, geoip and nfslock options are not supported.

Example config/plugins line (after relay, before rcpt_ok):

    greylisting black_timeout 600 sender 1

Imports at load: none beyond the core.
"""

import time

from qpsmtpd_stdio import DECLINED, DENYSOFT, LOGERROR, LOGINFO, LOGWARN

DENYMSG = "This mail is temporarily denied"
DEFAULTS = {"remote_ip": "1", "sender": "0", "recipient": "0", "reject": "1", "deny_late": "0",
            "black_timeout": "3000", "grey_timeout": "12000", "white_timeout": "3110400"}
IGNORED = ("per_recipient", "per_recipient_db", "nfslock", "p0f", "geoip", "upgrade", "loglevel")


def register(plugin, *args):
    opts = dict(DEFAULTS)
    for line in plugin.config("denysoft_greylist"):
        key, _, value = line.partition(" ")
        opts[key.lower()] = value.strip()
    given = plugin.options()
    if "mode" in given and "reject" not in given:
        given["reject"] = "0" if given["mode"].lower() in ("testonly", "off") else "1"
    opts.update(given)
    for key in sorted(set(opts) - set(DEFAULTS) - {"db_dir", "mode", "store"}):
        plugin.log(LOGWARN, f"argument {key} is {'not supported here' if key in IGNORED else 'unknown'}; ignored")
    plugin.flags = {k: opts[k] not in ("0", "") for k in ("remote_ip", "sender", "recipient", "reject", "deny_late")}
    plugin.timeouts = {k: float(opts[k]) for k in ("black_timeout", "grey_timeout", "white_timeout")}
    plugin.db_dir = opts.get("db_dir")
    plugin.store_url = opts.get("store")  # else the config file `store`, read by store.open_store
    plugin.db = None
    if not any(plugin.flags[k] for k in ("remote_ip", "sender", "recipient")):
        raise ValueError("greylisting: enable one of remote_ip, sender, recipient")
    if plugin.flags["recipient"]:
        plugin.register_hook("rcpt", check_rcpt)
    else:
        plugin.register_hook("mail", check_mail)


def check_mail(plugin, txn, sender, params):
    if greylist(plugin, txn, sender) and plugin.flags["reject"]:
        if plugin.flags["deny_late"]:
            txn.notes["greylist"] = DENYMSG
            return DECLINED
        return DENYSOFT, DENYMSG
    return DECLINED


def check_rcpt(plugin, txn, rcpt, params):
    if greylist(plugin, txn, txn.sender, rcpt) and plugin.flags["reject"]:
        if txn.sender.is_null or plugin.flags["deny_late"]:
            txn.notes["greylist"] = DENYMSG  # a bounce (or deny_late) is deferred at DATA
            return DECLINED
        return DENYSOFT, DENYMSG
    return DECLINED


def hook_data(plugin, txn):
    if not txn.notes.get("greylist"):
        return DECLINED
    if txn.notes.get("whitelistrcpt", 0) >= len(txn.recipients):
        plugin.log(LOGINFO, "skip, all recipients whitelisted")
        return DECLINED
    return DENYSOFT, txn.notes["greylist"]


def greylist(plugin, txn, sender, rcpt=None):
    """True if this triplet is to be deferred now (the store is updated either way)."""
    conn = plugin.connection
    if plugin.is_immune(txn):
        return False
    if plugin.is_naughty():
        return False
    parts = [conn.remote_ip] if plugin.flags["remote_ip"] else []
    if plugin.flags["sender"]:
        parts.append(sender.address.lower() if sender and not sender.is_null else "<>")
    if plugin.flags["recipient"] and rcpt is not None:
        parts.append(rcpt.address.lower())
    key = "|".join(parts)
    from qpsmtpd_stdio import store

    if plugin.db is None:
        plugin.db = store.open_store(plugin, plugin.db_dir, ("greylist",), plugin.store_url)
        if plugin.db is None:
            return False
    now, t = time.time(), plugin.timeouts
    def change(row):
        new, verdict, why = decide(row, now, t)
        return new, new[0] + (t["white_timeout"] if new[2] else t["grey_timeout"]), (verdict, why)

    try:
        verdict, why = plugin.db.update("greylist", key, ("ts", "black", "white"), change)
    except store.StoreError as exc:
        plugin.log(LOGERROR, f"store error, accepting: {exc}")
        return False
    tolerated = "" if plugin.flags["reject"] else ", tolerated"
    plugin.log(LOGWARN if verdict else LOGINFO, f"{why} ({key}){tolerated}")
    return verdict


def decide(row, now, t):
    """(new (ts, black, white), defer?, why) for a triplet's record `row` (None if unknown)."""
    ts, black, white = row or (now, 0, 0)
    black, white = int(black), int(white)
    age = now - ts
    if row and white and age < t["white_timeout"]:
        return (now, black, white + 1), False, f"pass, white, {white + 1} deliveries"
    if row and not white and age < t["black_timeout"]:
        return (ts, black + 1, 0), True, f"fail, black, {black + 1} deferred attempts"
    if row and not white and age < t["grey_timeout"]:
        return (now, black, 1), False, "pass, grey -> white"
    return (now, 0, 0), True, "fail, initial DENYSOFT, " + ("expired" if row else "unknown")

