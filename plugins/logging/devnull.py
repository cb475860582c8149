"""logging/devnull - throw every log line away

Arguments: none.

Config files: none.

Listed in config/logging, it takes every log line and keeps none: nothing
reaches stderr or syslog. (`loglevel 0` keeps only emergencies instead.)

Example config/logging line:

    logging/devnull

Imports at load: none beyond the core.
"""

from qpsmtpd_stdio import OK


def hook_logging(plugin, txn, level, hook, plugin_name, message):
    return OK
