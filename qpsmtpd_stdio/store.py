"""What plugins remember across connections (greylisting, karma): one SQLite file that every process shares.

    from qpsmtpd_stdio import store

    db = store.open_store(plugin, db_dir, ("karma",))  # None (logged) if it cannot be opened
    row = db.get("karma", ip, FIELDS)                  # a tuple of floats, or None
    result = db.update("karma", ip, FIELDS, change)    # change(row) -> (new row, expires at, result)

Both backends, SQLite and Redis, answer these two calls the same way, so a
plugin never asks which one it has. A record lapses at the Unix time its
last update() gave.

Every connection is its own process, so many may open the file at once. The
database runs in WAL mode (readers never block the one writer), and every
read-modify-write happens inside `BEGIN IMMEDIATE`, so two processes never
interleave an update of the same row. A process that finds the file locked
waits up to `BUSY_TIMEOUT` seconds, then gets `store.Busy`: plugins treat that
(and any other StoreError) as "no answer" and let the mail through, logged.

The file is `qpsmtpd.sqlite` in `db_dir` (a plugin argument), else in the
directory named by config file `store_dir`, else in /var/lib/qpsmtpd if that directory exists, else in the config directory
($QPSMTPD_CONFIG; qpsmtpd's last choice too). Each plugin creates its own table on first use.
SQLite (its C module `_sqlite3`, without the datetime adapters of `sqlite3`) is
imported only by a connection that reaches such a plugin's hook, and without
functools (sqlite_module()).

Sites with several MX hosts can share one Redis instead: config file `store`
(or plugin argument `store`) holding `redis://host:port/db` (also rediss://,
unix://). open_store() then returns a RedisStore (needs the `redis` package,
imported only then): records are hashes `qpsmtpd:<table>:<key>`, read with
get() and changed with update(), an optimistic WATCH/MULTI transaction retried
until it commits (Busy after BUSY_TIMEOUT), each key expiring as the plugin
says. Socket timeouts are REDIS_TIMEOUT; an unreachable Redis raises
StoreError like a broken SQLite file, so plugins fail open the same way.
"""

import os

from .constants import LOGERROR

FILENAME = "qpsmtpd.sqlite"
SYSTEM_DIR = "/var/lib/qpsmtpd"
BUSY_TIMEOUT = 5.0  # seconds a process waits for another's write before giving up
OPEN_ATTEMPTS = 10  # opening while others create the file: tries, 20 ms apart and growing (about 1 s in all)
REDIS_TIMEOUT = 2.0  # seconds for a Redis connect or reply
REDIS_PREFIX = "qpsmtpd:"
_open: dict = {}  # SQLite path or Redis URL -> the store open in this process (one session), closed by close_all()

# table -> (its key column, CREATE TABLE). `expires` is when a row lapses (NULL in rows written before it
# existed: they stay until next updated).
SCHEMA = {
    "greylist": ("key", "CREATE TABLE IF NOT EXISTS greylist (key TEXT PRIMARY KEY, ts REAL NOT NULL,"
                        " black INTEGER NOT NULL DEFAULT 0, white INTEGER NOT NULL DEFAULT 0, expires REAL)"),
    "karma": ("ip", "CREATE TABLE IF NOT EXISTS karma (ip TEXT PRIMARY KEY, penalty_start REAL NOT NULL DEFAULT 0,"
                    " naughty INTEGER NOT NULL DEFAULT 0, nice INTEGER NOT NULL DEFAULT 0,"
                    " connects INTEGER NOT NULL DEFAULT 0, last REAL NOT NULL DEFAULT 0, expires REAL)"),
    "auth_failures": ("ip", "CREATE TABLE IF NOT EXISTS auth_failures (ip TEXT PRIMARY KEY,"
                            " failures INTEGER NOT NULL DEFAULT 0, first REAL NOT NULL DEFAULT 0, expires REAL)"),
    "rcpt_verify": ("key", "CREATE TABLE IF NOT EXISTS rcpt_verify (key TEXT PRIMARY KEY,"
                           " code INTEGER NOT NULL DEFAULT 0, checked REAL NOT NULL DEFAULT 0, expires REAL)"),
}


class StoreError(Exception):
    """The store could not be opened, read or written."""


class Busy(StoreError):
    """Another process held the write lock for longer than the busy timeout."""


def default_dir(plugin) -> str | None:
    """Config file `store_dir`, else /var/lib/qpsmtpd if it exists, else the config directory, else None."""
    configured = [line.strip() for line in plugin.config("store_dir") if line.strip()]
    if configured:
        return configured[0]
    if os.path.isdir(SYSTEM_DIR):
        return SYSTEM_DIR
    config_dir = getattr(plugin, "config_dir", None)  # not in the plugin API yet; $QPSMTPD_CONFIG meanwhile
    return (config_dir() if callable(config_dir) else None) or os.environ.get("QPSMTPD_CONFIG") or None


def store_url(plugin, url: str | None = None) -> str | None:
    """The Redis URL: `url` (a plugin argument) if given, else the first line of config file `store`, else None."""
    if not url:
        lines = [line.strip() for line in plugin.config("store") if line.strip()]
        url = lines[0] if lines else None
    return url or None


def open_store(plugin, db_dir: str | None = None, tables=(), url: str | None = None):
    """The shared store, with `tables` (names in SCHEMA) created; None (logged at LOGERROR) if it cannot be had.

    A RedisStore when store_url() names one, else the SQLite Store.
    """
    url = store_url(plugin, url)
    if url:
        if url in _open:
            return _open[url]
        try:
            _open[url] = RedisStore(url)
            return _open[url]
        except StoreError as exc:
            plugin.log(3, f"store {_safe(url)}: {exc}")
            return None
    directory = db_dir or default_dir(plugin)
    if not directory:
        plugin.log(3, f"no db_dir given and {SYSTEM_DIR} does not exist: nothing is stored")
        return None
    path = os.path.join(directory, FILENAME)
    if path in _open:  # karma at connect and at disconnect, greylisting: one SQLite connection for the session
        try:
            _open[path].ensure(tables)
            return _open[path]
        except StoreError as exc:
            plugin.log(LOGERROR, f"store {path}: {exc}")
            return None
    for attempt in range(OPEN_ATTEMPTS):
        try:
            _open[path] = Store(path, tables)
            return _open[path]
        except Busy as exc:
            # Many sessions creating a new file at once: SQLite may say "locked" at once, without its busy wait.
            if attempt == OPEN_ATTEMPTS - 1:
                plugin.log(LOGERROR, f"store {path}: {exc}")
                return None
            import time

            time.sleep(0.02 * (attempt + 1))
        except StoreError as exc:
            plugin.log(LOGERROR, f"store {path}: {exc}")
            return None


def close_all() -> None:
    """Close the stores this process opened; the session's end calls it."""
    for store in list(_open.values()):
        store.close()


def with_store(owner, tables, action, why: str, db_dir: str | None = None, url: str | None = None):
    """action(db) on the shared store; None (logged) if it cannot be opened or fails.

    Callers treat None as "no answer" and refuse nothing. `owner` is a plugin
    (or anything with its config, config_dir and log); `why` ends the log line.
    """
    db = open_store(owner, db_dir, tables, url)
    if db is None:
        return None
    try:
        return action(db)
    except StoreError as exc:
        owner.log(LOGERROR, f"store error, {why}: {exc}")
        return None


def sqlite_module():
    """`_sqlite3`, imported without functools (standins.py): it takes only lru_cache, whose C code is _functools'."""
    from .standins import import_with, lent_functools

    return import_with("_sqlite3", lent_functools())


class Store:
    """The SQLite file. Table and column names come from this module and the plugins, never from input."""

    def __init__(self, path: str, tables=(), timeout: float = BUSY_TIMEOUT) -> None:
        sqlite3 = sqlite_module()  # what sqlite3 wraps, less dbapi2's datetime adapters (~3 ms to import), unused here
        self.path = path
        self._errors = (sqlite3.Error,)
        self.tables: set[str] = set()
        try:
            # isolation_level=None: no implicit transactions; write() says BEGIN IMMEDIATE itself.
            self.db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at each checkpoint, never corrupt
        except sqlite3.Error as exc:
            raise _error(exc) from None
        self.ensure(tables)

    def ensure(self, tables) -> None:
        """Create the tables (names in SCHEMA) that do not exist yet, or lack the `expires` column."""
        if not set(tables) - self.tables:
            return
        try:
            existing = dict(self.db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
            missing = [name for name in tables if name not in existing]
            older = [name for name in tables if name in existing and "expires" not in existing[name]]
            if missing or older:  # the first connection ever, or after an upgrade; the others only read
                with self.write() as cursor:
                    for name in missing:
                        cursor.execute(SCHEMA[name][1])
                    for name in older:
                        cursor.execute(f"ALTER TABLE {name} ADD COLUMN expires REAL")
                    for name in tables:
                        cursor.execute(f"CREATE INDEX IF NOT EXISTS {name}_expires ON {name} (expires)")
        except self._errors as exc:
            raise _error(exc) from None
        self.tables.update(tables)

    def get(self, table: str, key: str, fields) -> tuple | None:
        """The record's `fields` as floats, or None if there is none."""
        rows = self.read(f"SELECT {', '.join(fields)} FROM {table} WHERE {SCHEMA[table][0]} = ?", (key,))
        return tuple(float(v or 0) for v in rows[0]) if rows else None

    def update(self, table: str, key: str, fields, change):
        """Atomically: row = get(); (new, expire_at, result) = change(row); store new; return result.

        `new` is a tuple for `fields` (None: leave the record alone); the record
        lapses at the Unix time `expire_at`. Lapsed records are deleted here too.
        """
        import time

        fields = list(fields)
        key_column = SCHEMA[table][0]
        with self.write() as cursor:
            row = cursor.execute(f"SELECT {', '.join(fields)} FROM {table} WHERE {key_column} = ?", (key,)).fetchone()
            new, expire_at, result = change(tuple(float(v or 0) for v in row) if row else None)
            if new is not None:
                columns = ", ".join([key_column, *fields, "expires"])
                cursor.execute(f"INSERT OR REPLACE INTO {table} ({columns}) VALUES ({', '.join('?' * (len(fields) + 2))})",
                               (key, *new, expire_at))
            cursor.execute(f"DELETE FROM {table} WHERE expires < ?", (time.time(),))
        return result

    def write(self) -> "_Write":
        """A context manager: an immediate (write-locked) transaction, committed on success, rolled back on error."""
        return _Write(self)

    def read(self, sql: str, args=()) -> list[tuple]:
        try:
            return self.db.execute(sql, args).fetchall()
        except self._errors as exc:
            raise _error(exc) from None

    def close(self) -> None:
        if _open.get(self.path) is self:
            del _open[self.path]
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


def _safe(url: str) -> str:
    """The URL without a password, for logs."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if "@" in rest else url


class RedisStore:
    """Records as Redis hashes, shared by every MX host that points at the same server; the API of Store."""

    def __init__(self, url: str, timeout: float = REDIS_TIMEOUT, busy_timeout: float = BUSY_TIMEOUT) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise StoreError(f"not a Redis URL: {_safe(url)}")
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:
            raise StoreError(f"the redis package is needed for {_safe(url)}: {exc}") from None
        self.url, self.busy_timeout = url, busy_timeout
        self._redis = redis
        try:  # no retries: a dead server costs one timeout, then the plugin fails open
            self.db = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                           retry=Retry(NoBackoff(), 0), retry_on_timeout=False,
                                           decode_responses=True)
        except (ValueError, redis.RedisError) as exc:
            raise StoreError(str(exc)) from None

    @staticmethod
    def key(table: str, key: str) -> str:
        return f"{REDIS_PREFIX}{table}:{key}"

    @staticmethod
    def _row(values, fields):
        if not any(v is not None for v in values):
            return None
        return tuple(float(v) if v is not None else 0.0 for v in values)

    def get(self, table: str, key: str, fields) -> tuple | None:
        """The record's `fields` as floats (missing ones 0), or None if there is none."""
        try:
            return self._row(self.db.hmget(self.key(table, key), list(fields)), fields)
        except self._redis.RedisError as exc:
            raise StoreError(f"redis {_safe(self.url)}: {exc}") from None

    def update(self, table: str, key: str, fields, change):
        """Atomically: row = get(); (new, expire_at, result) = change(row); store new; return result.

        `new` is a tuple for `fields` (or None: leave the record alone); the key
        expires at the Unix time `expire_at` (at least a millisecond from now).
        Another writer's commit in between makes it run `change` again.
        """
        import time

        name, fields = self.key(table, key), list(fields)
        deadline = time.monotonic() + self.busy_timeout
        try:
            with self.db.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        pipe.watch(name)
                        new, expire_at, result = change(self._row(pipe.hmget(name, fields), fields))
                        if new is None:
                            pipe.unwatch()
                            return result
                        pipe.multi()
                        pipe.hset(name, mapping={f: repr(v) if isinstance(v, float) else v
                                                 for f, v in zip(fields, new)})
                        pipe.pexpireat(name, max(int(expire_at * 1000), int(time.time() * 1000) + 1))
                        pipe.execute()
                        return result
                    except self._redis.WatchError:
                        if time.monotonic() > deadline:
                            raise Busy(f"redis {_safe(self.url)}: {name} kept changing") from None
        except self._redis.RedisError as exc:
            raise StoreError(f"redis {_safe(self.url)}: {exc}") from None

    def close(self) -> None:
        if _open.get(self.url) is self:
            del _open[self.url]
        try:
            self.db.close()
        except Exception:
            pass
