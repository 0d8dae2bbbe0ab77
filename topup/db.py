"""The database handle: one peewee proxy, pointed at a URL by init_app.

SQLite (the embedded default) runs in WAL mode and every transaction begins
IMMEDIATE, so writers queue on the lock instead of failing half-way.
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


def open_database(url: str):
    if url.startswith("sqlite"):
        return connect(url, pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE")
    return connect(url)


def is_sqlite() -> bool:
    return isinstance(database.obj, SqliteDatabase)


def init_app(app) -> None:
    database.initialize(open_database(app.config["DATABASE_URL"]))

    @app.teardown_appcontext
    def close_connection(_exc):
        if not database.is_closed():
            database.close()
