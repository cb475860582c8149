"""The service user: started as root (inetd without a `user`, a test by hand), become it before serving.

Config `user` names it. Imported only when the process runs as root and a
user is configured, by main.py for a session and by check.py for `--check`,
which then sees what the service user will see.
"""

import os


def become(name: str) -> str | None:
    """Switch from root to the service user `name` (config `user`), groups and all; the reason if it cannot."""
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return f"config user: no such user {name!r}; refusing to run the session as root"
    try:
        os.initgroups(entry.pw_name, entry.pw_gid)  # ssl-cert and the like, as xinetd's `groups = yes` would
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except OSError as exc:
        return f"config user: cannot become {name!r}: {exc.strerror}; refusing to run the session as root"
    os.environ["HOME"] = entry.pw_dir
    return None


def unreadable() -> list[str]:
    """The directories of the interpreter and of this package that the current user cannot read."""
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    places = [os.path.dirname(os.__file__), os.path.dirname(os.path.realpath(sys.executable)), here]
    return [p for p in dict.fromkeys(places) if not os.access(p, os.R_OK | os.X_OK)]
