"""loadcheck - defer new connections while the machine is busy

Arguments: `loadcheck [max_load N] [cache_time S]` (defaults 7 and 10)

  max_load    the 1-minute load average above which a connection gets
              "421 Server load too high, please try again later."
  cache_time  accepted for qpsmtpd's config: every connection is a new
              process here, so the load is read afresh each time (one read
              of /proc/loadavg).
  uptime      accepted for qpsmtpd's config and not used: /proc/loadavg (or
              os.getloadavg) is read instead.

Config files: none.

Example config/plugins line:

    loadcheck max_load 10

Imports at load: none beyond the core.
"""

import os

from qpsmtpd_stdio import DECLINED, DENYSOFT, LOGERROR


def register(plugin, *args):
    plugin.opts = plugin.options({"max_load": "7"})
    try:
        plugin.max_load = float(plugin.opts["max_load"])
    except ValueError:
        plugin.log(LOGERROR, f"max_load: not a number: {plugin.opts['max_load']!r}; using 7")
        plugin.max_load = 7.0


def hook_connect(plugin, txn):
    try:
        load = os.getloadavg()[0]
    except OSError:
        return DECLINED  # no load average on this system: nothing to check
    if load > plugin.max_load:
        plugin.log(LOGERROR, f"local load too high: {load:.2f}")
        return DENYSOFT, "Server load too high, please try again later."
    return DECLINED
