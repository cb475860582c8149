"""bench stub for a plugin that does not exist yet: declines its hooks __HOOKS__."""
from qpsmtpd_stdio import DECLINED


def _decline(plugin, txn, *args):
    return DECLINED


def register(plugin, *args):
    for hook in __HOOKS__:
        plugin.register_hook(hook, _decline)
