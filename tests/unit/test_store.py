"""store.py's SQLite side: get/update as the plugins use them, expiry, and a database from before `expires`.

The Redis side answers the same calls; tests/e2e/test_store_redis.py runs it against a real redis-server.
"""

from __future__ import annotations

import sqlite3
import time

from qpsmtpd_stdio.store import Store

FIELDS = ("ts", "black", "white")


def test_get_and_update(tmp_path):
    db = Store(str(tmp_path / "s.sqlite"), ("greylist",))
    assert db.get("greylist", "k", FIELDS) is None
    seen = []

    def change(row):
        seen.append(row)
        return (100.0, (row[1] if row else 0) + 1, 0), time.time() + 60, "done"

    assert db.update("greylist", "k", FIELDS, change) == "done"
    assert db.update("greylist", "k", FIELDS, change) == "done"
    assert seen == [None, (100.0, 1.0, 0.0)]
    assert db.get("greylist", "k", FIELDS) == (100.0, 2.0, 0.0)
    assert db.update("greylist", "k", FIELDS, lambda row: (None, 0, row)) == (100.0, 2.0, 0.0)  # left alone
    db.close()


def test_lapsed_records_are_forgotten(tmp_path):
    db = Store(str(tmp_path / "s.sqlite"), ("greylist",))
    db.update("greylist", "old", FIELDS, lambda row: ((1.0, 0, 0), time.time() - 1, None))
    db.update("greylist", "new", FIELDS, lambda row: ((2.0, 0, 0), time.time() + 3600, None))
    assert db.get("greylist", "old", FIELDS) is None  # deleted by the update that came after it lapsed
    assert db.get("greylist", "new", FIELDS) == (2.0, 0.0, 0.0)


def test_a_database_from_before_expires_is_upgraded_in_place(tmp_path):
    path = tmp_path / "s.sqlite"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE karma (ip TEXT PRIMARY KEY, penalty_start REAL NOT NULL DEFAULT 0,"
                    " naughty INTEGER NOT NULL DEFAULT 0, nice INTEGER NOT NULL DEFAULT 0,"
                    " connects INTEGER NOT NULL DEFAULT 0, last REAL NOT NULL DEFAULT 0)")
        old.execute("INSERT INTO karma VALUES ('192.0.2.1', 0, 3, 1, 4, 5)")
    db = Store(str(path), ("karma",))
    fields = ("penalty_start", "naughty", "nice", "connects", "last")
    assert db.get("karma", "192.0.2.1", fields) == (0.0, 3.0, 1.0, 4.0, 5.0)  # kept: no expiry known yet
    db.update("karma", "192.0.2.9", fields, lambda row: ((0, 0, 1, 1, time.time()), time.time() + 60, None))
    assert db.get("karma", "192.0.2.1", fields) is not None
    db.close()
    with sqlite3.connect(path) as check:
        columns = [row[1] for row in check.execute("PRAGMA table_info(karma)")]
    assert columns[-1] == "expires"
    Store(str(path), ("karma",)).close()  # a second open finds nothing to upgrade


class Owner:
    def __init__(self, directory):
        self.logged = []
        self.config = lambda name: [str(directory)] if name == "store_dir" else []
        self.config_dir = lambda: str(directory)
        self.log = lambda level, message: self.logged.append(message)


def test_open_retries_while_others_create_the_file(tmp_path, monkeypatch):
    from qpsmtpd_stdio import store

    real, calls = store.Store, []

    def flaky(path, tables):
        calls.append(path)
        if len(calls) < 3:
            raise store.Busy("database is locked")
        return real(path, tables)

    monkeypatch.setattr(store, "Store", flaky)
    owner = Owner(tmp_path)
    db = store.open_store(owner, None, ("greylist",))
    assert db is not None and len(calls) == 3 and owner.logged == []
    db.close()


def test_open_gives_up_and_logs_once(tmp_path, monkeypatch):
    from qpsmtpd_stdio import store

    def busy(path, tables):
        raise store.Busy("database is locked")

    monkeypatch.setattr(store, "Store", busy)
    monkeypatch.setattr(store, "OPEN_ATTEMPTS", 3)
    owner = Owner(tmp_path)
    assert store.open_store(owner, None, ("greylist",)) is None
    assert len(owner.logged) == 1 and "database is locked" in owner.logged[0]


def test_opening_the_store_imports_no_datetime(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from qpsmtpd_stdio.store import Store; db = Store(sys.argv[1], ('karma',));"
            "print(db.get('karma', '192.0.2.1', ('naughty',)), 'datetime' in sys.modules, 'sqlite3' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.sqlite")], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["None", "False", "False"]


def _fresh(code: str, *args: str) -> list[str]:
    """Run code in an interpreter without site (nothing imported beyond the bare start), the checkout on its path."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return subprocess.run([sys.executable, "-S", "-c", code, *args], capture_output=True, text=True, check=True,
                          env=env).stdout.split()


def test_sqlite_is_imported_without_functools_and_its_statement_cache_works(tmp_path):
    # 300 different statements, each run twice: past the cache's 128, so entries are evicted and made again.
    code = ("import sys; from qpsmtpd_stdio.store import Store; db = Store(sys.argv[1], ('karma',));"
            "ok = all(db.read(f'SELECT {i} + ?', (1,)) == [(i + 1,)] for i in list(range(300)) * 2);"
            "loaded = [m in sys.modules for m in ('functools', 'collections')];"
            "import functools; print(ok, *loaded, hasattr(functools, 'reduce'), functools.lru_cache.__module__)")
    assert _fresh(code, str(tmp_path / "s.sqlite")) == ["True", "False", "False", "True", "functools"]

