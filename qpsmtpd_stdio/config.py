"""qmail-style flat config files, read the way qpsmtpd reads them.

One item a line; blank lines and lines starting with '#' are skipped; leading
and trailing white space is trimmed; `$include PATH` (a file, or a directory
whose files are read in name order) works in every file. A file missing from
the config directory is looked up in /var/qmail/control, as qpsmtpd does.
Files are read on first use and cached for the life of the process, which is
one connection, so an edit applies to the next connection.
"""

import os
from stat import S_ISDIR

from .constants import CHOICES, DEFAULTS, FLAG_WORDS, NOT_ZERO
from .digits import number

TYPE_CHECKING = False  # typing costs ~9 ms of imports per connection
if TYPE_CHECKING:
    from typing import Callable

QMAIL_CONTROL = "/var/qmail/control"
SYSTEM_CONFIG = "/etc/qpsmtpd"


class ConfigError(Exception):
    pass


def find_config_dir(cli_dir: str | None = None) -> str:
    """--config DIR, else $QPSMTPD_CONFIG, else config/ beside the install, else /etc/qpsmtpd."""
    if cli_dir:
        return cli_dir
    env = os.environ.get("QPSMTPD_CONFIG")
    if env:
        return env
    beside = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config")
    if os.path.isdir(beside):
        return beside
    return SYSTEM_CONFIG


class Config:
    """Reads config files from one directory. `hook` lets plugins answer lookups (qpsmtpd's config hook)."""

    def __init__(self, directory: str, fallback: str | None = QMAIL_CONTROL) -> None:
        self.directory = directory
        self.fallback = fallback
        self._cache: dict[str, list[str]] = {}
        self._listing: dict[str, frozenset[str] | None] = {}
        self.hook: Callable[[str], list[str] | None] | None = None
        self.warn: Callable[[str], None] = lambda message: None  # set to the session's log

    def path(self, name: str) -> str | None:
        """The file that holds `name`, or None."""
        if os.path.isabs(name):
            return name if os.path.exists(name) else None
        for directory in (self.directory, self.fallback):
            if directory and self._has(directory, name):
                return os.path.join(directory, name)
        return None

    def _has(self, directory: str, name: str) -> bool:
        # A session asks for ~40 names, most of them absent: one listdir per directory, not two stats per name.
        if directory not in self._listing:
            try:
                self._listing[directory] = frozenset(os.listdir(directory))
            except FileNotFoundError:
                self._listing[directory] = frozenset()
            except OSError:  # searchable but not readable (mode 0711): ask for each name
                self._listing[directory] = None
        names = self._listing[directory]
        return (names is None or name.partition("/")[0] in names) and os.path.exists(os.path.join(directory, name))

    def get(self, name: str) -> list[str]:
        """All items of a config file (an empty list if it does not exist)."""
        if self.hook is not None:
            answer = self.hook(name)
            if answer is not None:
                return answer
        if name not in self._cache:
            path = self.path(name)
            self._cache[name] = [item for _, _, item in self.walk(path)] if path else []
        return self._cache[name]

    def get_one(self, name: str, default: str | None = None) -> str | None:
        items = self.get(name)
        return items[0] if items else default

    def get_int(self, name: str) -> int:
        """An integer setting, with its default from constants.DEFAULTS when unset or unreadable."""
        value = self.get_one(name)
        if value is not None:
            found = number(value.split()[0]) if value.split() else None
            if found and name in NOT_ZERO or found is not None and name not in NOT_ZERO:
                return found
            self.warn(f"config {name}: {'0 is not allowed' if found == 0 else 'not a number'}: {value!r}; "
                      f"using the default")
        return int(DEFAULTS[name])

    def get_choice(self, name: str) -> str:
        """A setting with a fixed set of words (constants.CHOICES), lower-cased; an unknown word is warned of, and the default used."""
        choices = CHOICES[name]
        value = self.get_one(name)
        word = value.split()[0].lower() if value and value.split() else choices[0]
        if word not in choices:
            self.warn(f"config {name}: {value!r} is not one of {', '.join(dict.fromkeys(choices))}; using {choices[0]}")
            return choices[0]
        return word

    def get_flag(self, name: str) -> bool:
        """An on/off setting (1/0, yes/no, true/false, on/off)."""
        return FLAG_WORDS[self.get_choice(name)]

    def walk(self, path: str, where: str | None = None, on_problem=None, seen: frozenset = frozenset()):
        """(file, line number, item) for each item of the file or directory at `path`, following `$include`.

        A problem (an `$include` loop, an unreadable file) is passed to
        `on_problem(where, message)` (`in.qpsmtpd --check` reports and goes
        on), or raises ConfigError when there is no such callback.
        """
        where = where or path

        def problem(message: str) -> list:
            if on_problem is None:
                raise ConfigError(message)
            on_problem(where, message)
            return []

        try:
            st = os.stat(path)  # one call for what realpath() and isdir() took a call per path component for
        except OSError as exc:
            return problem(f"cannot read {path}: {exc.strerror}")
        if (st.st_dev, st.st_ino) in seen:
            return problem(f"$include loop at {path}")
        seen = seen | {(st.st_dev, st.st_ino)}
        if S_ISDIR(st.st_mode):
            items: list[tuple[str, int, str]] = []
            for entry in sorted(os.listdir(path)):
                if not entry.startswith("."):
                    items += self.walk(os.path.join(path, entry), where, on_problem, seen)
            return items
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            return problem(f"cannot read {path}: {exc.strerror}")
        items = []
        for lineno, line in enumerate(raw.decode("utf-8", "replace").split("\n"), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("$include"):
                target = line[len("$include"):].strip()
                if not os.path.isabs(target):
                    target = self.path(target) or os.path.join(self.directory, target)
                items += self.walk(target, f"{path}:{lineno}", on_problem, seen)
                continue
            items.append((path, lineno, line))
        return items
