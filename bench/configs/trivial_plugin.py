"""bench trivial plugin: registers four hooks and declines everything."""
from qpsmtpd_stdio import DECLINED


def register(plugin, *args):
    plugin.calls = 0


def hook_connect(plugin, txn):
    return DECLINED


def hook_mail(plugin, txn, sender, params):
    return DECLINED


def hook_rcpt(plugin, txn, rcpt, params):
    return DECLINED


def hook_data_post(plugin, txn):
    return DECLINED
