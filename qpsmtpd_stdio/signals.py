"""Signals: the one place they are wired, for a session (main.py), `--check` (check.py) and the test harness.

SIGALRM while a hook runs is the plugin_timeout firing (pluginhost.py arms it):
it raises HookTimeout inside the hook. In a session, SIGTERM, SIGHUP and a
SIGALRM outside any hook raise Terminate: the session answers 421 and ends.
"""

import _signal

from . import pluginhost

TYPE_CHECKING = False  # collections.abc costs ~2 ms of imports per connection
if TYPE_CHECKING:
    from collections.abc import Callable

SIGNAL_NAMES = {_signal.SIGTERM: "SIGTERM", _signal.SIGHUP: "SIGHUP", _signal.SIGALRM: "SIGALRM"}


class Terminate(BaseException):
    """A signal (SIGTERM, SIGHUP, SIGALRM outside a hook) ends the session."""


def install(terminate: bool = True) -> "Callable[[], None]":
    """Wire the handlers; returns a function that puts the previous ones back (and stops the timer)."""

    def on_signal(signum, frame):
        if signum == _signal.SIGALRM and pluginhost.in_hook:
            raise pluginhost.HookTimeout()
        if terminate:
            raise Terminate(SIGNAL_NAMES.get(signum, str(signum)))

    wired = tuple(SIGNAL_NAMES) if terminate else (_signal.SIGALRM,)
    previous = {sig: _signal.signal(sig, on_signal) for sig in wired}

    def restore() -> None:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            _signal.signal(sig, handler)

    return restore
