"""What plugins remember across connections (greylisting, karma): one SQLite file that every process shares.

    from qpsmtpd_stdio import store

    db = store.open_store(plugin, db_dir)          # None (logged) if it cannot be opened
    with db.write() as cursor:                     # BEGIN IMMEDIATE ... COMMIT
        cursor.execute("SELECT ...")

Every connection is its own process, so many may open the file at once. The
database runs in WAL mode (readers never block the one writer), and every
read-modify-write happens inside `BEGIN IMMEDIATE`, so two processes never
interleave an update of the same row. A process that finds the file locked
waits up to `BUSY_TIMEOUT` seconds, then gets `store.Busy`: plugins treat that
(and any other StoreError) as "no answer" and let the mail through, logged.

The file is `qpsmtpd.sqlite` in `db_dir` (a plugin argument), else in
/var/lib/qpsmtpd if that directory exists, else in the config directory
($QPSMTPD_CONFIG; qpsmtpd's last choice too). Each plugin creates its own table on first use.
`import sqlite3` is paid only by a connection that reaches such a plugin's hook.
"""

from __future__ import annotations

import os

FILENAME = "qpsmtpd.sqlite"
SYSTEM_DIR = "/var/lib/qpsmtpd"
BUSY_TIMEOUT = 5.0  # seconds a process waits for another's write before giving up

SCHEMA = {
    "greylist": "CREATE TABLE IF NOT EXISTS greylist (key TEXT PRIMARY KEY, ts REAL NOT NULL,"
                " black INTEGER NOT NULL DEFAULT 0, white INTEGER NOT NULL DEFAULT 0)",
    "greylist_ts": "CREATE INDEX IF NOT EXISTS greylist_ts ON greylist (ts)",
    "karma": "CREATE TABLE IF NOT EXISTS karma (ip TEXT PRIMARY KEY, penalty_start REAL NOT NULL DEFAULT 0,"
             " naughty INTEGER NOT NULL DEFAULT 0, nice INTEGER NOT NULL DEFAULT 0,"
             " connects INTEGER NOT NULL DEFAULT 0, last REAL NOT NULL DEFAULT 0)",
    "karma_last": "CREATE INDEX IF NOT EXISTS karma_last ON karma (last)",
}


class StoreError(Exception):
    """The store could not be opened, read or written."""


class Busy(StoreError):
    """Another process held the write lock for longer than the busy timeout."""


def default_dir(plugin) -> str | None:
    """/var/lib/qpsmtpd if it exists, else the config directory (when the plugin API tells it), else None."""
    if os.path.isdir(SYSTEM_DIR):
        return SYSTEM_DIR
    config_dir = getattr(plugin, "config_dir", None)  # not in the plugin API yet; $QPSMTPD_CONFIG meanwhile
    return (config_dir() if callable(config_dir) else None) or os.environ.get("QPSMTPD_CONFIG") or None


def open_store(plugin, db_dir: str | None = None, tables=()) -> Store | None:
    """The shared store, with `tables` (names in SCHEMA) created; None (logged at LOGERROR) if it cannot be had."""
    directory = db_dir or default_dir(plugin)
    if not directory:
        plugin.log(3, f"no db_dir given and {SYSTEM_DIR} does not exist: nothing is stored")
        return None
    path = os.path.join(directory, FILENAME)
    try:
        return Store(path, tables)
    except StoreError as exc:
        plugin.log(3, f"store {path}: {exc}")
        return None


class Store:
    def __init__(self, path: str, tables=(), timeout: float = BUSY_TIMEOUT) -> None:
        import sqlite3

        self.path = path
        self._errors = (sqlite3.Error,)
        try:
            # isolation_level=None: no implicit transactions; write() says BEGIN IMMEDIATE itself.
            self.db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at each checkpoint, never corrupt
            existing = {name for (name,) in self.db.execute("SELECT name FROM sqlite_master")}
            missing = [name for name in tables if name not in existing]
            if missing:  # the first connection ever; the others only read the schema
                with self.write() as cursor:
                    for name in missing:
                        cursor.execute(SCHEMA[name])
        except sqlite3.Error as exc:
            raise _error(exc) from None

    def write(self) -> _Write:
        """A context manager: an immediate (write-locked) transaction, committed on success, rolled back on error."""
        return _Write(self)

    def read(self, sql: str, args=()) -> list[tuple]:
        try:
            return self.db.execute(sql, args).fetchall()
        except self._errors as exc:
            raise _error(exc) from None

    def close(self) -> None:
        try:
            self.db.close()
        except self._errors:
            pass


class _Write:
    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self):
        try:
            self.store.db.execute("BEGIN IMMEDIATE")
        except self.store._errors as exc:
            raise _error(exc) from None
        return self.store.db.cursor()

    def __exit__(self, kind, value, traceback) -> bool:
        db = self.store.db
        try:
            if kind is None:
                db.execute("COMMIT")
                return False
            db.execute("ROLLBACK")
        except self.store._errors as exc:
            if kind is None:
                raise _error(exc) from None
        if isinstance(value, self.store._errors):
            raise _error(value) from None
        return False


def _error(exc: Exception) -> StoreError:
    text = str(exc)
    return Busy(text) if "locked" in text or "busy" in text else StoreError(text)
