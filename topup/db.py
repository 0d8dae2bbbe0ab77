"""The database handle: one peewee proxy, pointed at a URL by init_app.

SQLite (the embedded default) runs in WAL mode and every transaction begins
IMMEDIATE, so writers queue on the lock instead of failing half-way.
Connections are pooled (playhouse.pool): a request borrows one and gives it
back at teardown, instead of connecting (and setting pragmas) every time.
"""
from __future__ import annotations

from playhouse.db_url import connect
from peewee import DatabaseProxy, SqliteDatabase

database = DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
    "busy_timeout": 10_000,
}


POOL = {"max_connections": 64, "stale_timeout": 300, "timeout": 10}


def open_database(url: str):
    scheme, sep, rest = url.partition("://")
    if "+" not in scheme:
        url = f"{scheme}+pool{sep}{rest}"
    if scheme.startswith("sqlite"):
        # A pooled connection moves between threads, one at a time.
        return connect(url, pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE",
                       check_same_thread=False, **POOL)
    return connect(url, **POOL)


def close_all() -> None:
    """Close every pooled connection (tests, and processes that re-point the proxy)."""
    if not database.is_closed():
        database.close()
    if hasattr(database.obj, "close_all"):
        database.obj.close_all()


def is_sqlite() -> bool:
    return isinstance(database.obj, SqliteDatabase)


def init_app(app) -> None:
    database.initialize(open_database(app.config["DATABASE_URL"]))

    @app.teardown_appcontext
    def close_connection(_exc):
        if not database.is_closed():
            database.close()
