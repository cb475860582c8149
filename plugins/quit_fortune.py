"""quit_fortune - a fortune with the goodbye, for clients that said HELO

Arguments: `quit_fortune [PROGRAM]` (default /usr/games/fortune)

Config files: none.

QUIT from a client that greeted with HELO (not EHLO, so a person at a
telnet prompt, not a mailer) gets `fortune -s` after the 221 line, each line
indented. The program is Debian's `fortune-mod`, with `fortunes-min` or
another fortune database (only recommended by the package); if it is not
there, finds no fortunes, or says nothing within 2 seconds, a fixed line is
used instead.

Example config/plugins line:

    quit_fortune

Imports at load: none beyond the core (subprocess only for a HELO client's QUIT).
"""

import os

from qpsmtpd_stdio import DECLINED, DONE

FALLBACK = ["Mail is a letter that knows where it is going."]


def register(plugin, program="/usr/games/fortune", *rest):
    plugin.program = program


def hook_quit(plugin, txn):
    conn = plugin.connection
    if conn.esmtp or not conn.hello:
        return DECLINED
    lines = FALLBACK
    if os.access(plugin.program, os.X_OK):
        import subprocess  # here: a mailer's session (EHLO) never pays for it

        try:
            done = subprocess.run([plugin.program, "-s"], capture_output=True, timeout=2, stdin=subprocess.DEVNULL)
            lines = done.stdout.decode("utf-8", "replace").splitlines()[:20] or FALLBACK
        except (OSError, subprocess.TimeoutExpired):
            pass
    me = (plugin.config("me") or ["localhost"])[0]
    return DONE, [f"221 {me} closing connection."] + [f"/ {line.strip()}" for line in lines]
