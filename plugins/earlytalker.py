"""earlytalker - refuse clients that talk before the greeting

Arguments: `earlytalker [wait N] [reject 0|1] [reject_type temp|perm] [defer-reject 0|1] [check-at CONNECT|DATA]`

  wait          seconds to wait, silent, before the greeting (default 1);
                every connection pays this delay
  reject        1 (default) refuses an early talker; 0 only logs it
  reject_type   perm (default): 554 / 550; temp: 421 / 450
  defer-reject  1: greet as usual, refuse every MAIL and RCPT instead
  check-at      CONNECT (default): listen before the greeting; DATA: listen
                after a DATA command, before the 354 (a client that sends the
                message before being told to go ahead)
  action        qpsmtpd's older form: `action log`, `action deny`,
                `action denysoft` (Debian's default config uses `action log`)

Config files: none.

An SMTP client must wait for the 220 greeting before it speaks (RFC 5321
4.3.1); spam engines often do not. Relay clients are never checked.

Example config/plugins line:

    earlytalker wait 1 reject 1

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import DECLINED, DENY, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT, LOGINFO

TEXT = "Connecting host started transmitting before SMTP greeting"


def register(plugin, *args):
    opts = plugin.options({"wait": "1", "check-at": "CONNECT"})
    action = opts.get("action", "").lower()
    if "reject" not in opts:
        opts["reject"] = "0" if action == "log" else "1"
    if "reject_type" not in opts:
        opts["reject_type"] = "temp" if action == "denysoft" else "perm"
    plugin.wait = float(opts["wait"])
    plugin.reject = opts["reject"] not in ("0", "")
    plugin.temp = opts["reject_type"].lower().startswith("temp")
    plugin.defer = opts.get("defer-reject", "0") not in ("0", "")
    plugin.at = opts["check-at"].upper()
    if plugin.at not in ("CONNECT", "DATA"):
        raise ValueError(f"earlytalker: check-at must be CONNECT or DATA, not {plugin.at}")


def _caught(plugin):
    if plugin.connection.relay_client or not plugin.client_has_sent(plugin.wait):
        return False
    plugin.log(LOGINFO, f"early talker: {plugin.connection.remote_ip} spoke before it was its turn")
    plugin.connection.notes["earlytalker"] = True
    return True


def hook_connect(plugin, txn):
    if plugin.at != "CONNECT" or not _caught(plugin) or not plugin.reject or plugin.defer:
        return DECLINED
    return (DENYSOFT_DISCONNECT if plugin.temp else DENY_DISCONNECT), TEXT


def hook_data(plugin, txn):
    if plugin.at != "DATA" or not _caught(plugin) or not plugin.reject:
        return DECLINED
    return (DENYSOFT_DISCONNECT if plugin.temp else DENY_DISCONNECT), "Client sent data before the 354 go-ahead"


def _deferred(plugin):
    if plugin.defer and plugin.reject and plugin.connection.notes.get("earlytalker"):
        return (DENYSOFT if plugin.temp else DENY), TEXT
    return DECLINED


def hook_mail(plugin, txn, sender, params):
    return _deferred(plugin)


def hook_rcpt(plugin, txn, rcpt, params):
    return _deferred(plugin)
