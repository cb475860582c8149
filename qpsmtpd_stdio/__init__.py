"""qpsmtpd-stdio: a per-connection SMTP server for inetd, xinetd, tcpserver and systemd.

Plugins import their return codes and log levels from here:

    from qpsmtpd_stdio import OK, DECLINED, DENY, LOGINFO
"""

from .bytecode import install

install(__package__, __file__.rpartition("/")[0])  # the package's modules from their current bytecode cache

from .constants import (  # noqa: E402, F401  (the public plugin API)
    DECLINED,
    DENY,
    DENY_DISCONNECT,
    DENYHARD,
    DENYSOFT,
    DENYSOFT_DISCONNECT,
    DONE,
    LOGALERT,
    LOGCRIT,
    LOGDEBUG,
    LOGEMERG,
    LOGERROR,
    LOGINFO,
    LOGNOTICE,
    LOGWARN,
    OK,
    VERSION,
)

__version__ = VERSION
