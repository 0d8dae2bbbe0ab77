"""The database handle: one peewee proxy, pointed at a URL by init_app.

SQLite (the embedded default) runs in WAL mode and every transaction begins
IMMEDIATE, so writers queue on the lock instead of failing half-way; within
one process they queue on a Python lock first (see SerialSqliteDatabase).
Connections are pooled (playhouse.pool): a request borrows one and gives it
back at teardown, instead of connecting (and setting pragmas) every time.
"""
from __future__ import annotations

import re
import threading

from peewee import DatabaseProxy, OperationalError, SqliteDatabase, Value
from playhouse.db_url import connect, parse
from playhouse.pool import PooledSqliteDatabase

database = DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
    "busy_timeout": 10_000,
}


POOL = {"max_connections": 64, "stale_timeout": 300, "timeout": 10}
_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


class SerialSqliteDatabase(PooledSqliteDatabase):
    """Pooled SQLite whose transactions queue for the write lock on a Python
    lock, within the process.

    SQLite has one writer at a time; a thread that finds the lock taken waits
    in SQLite's busy handler, which sleeps in growing steps (up to 100 ms) and
    so wakes late, long after the lock was free. Under a burst of Buys that
    sleeping was the order-creation p99. A Python lock hands over the moment it
    is released. Every write of the process queues on it, a write outside a
    transaction too: one left to the busy handler would rarely find the lock
    free between two queued writers, and fail after busy_timeout. Other
    processes (a separate worker) still meet busy_timeout.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._writer = threading.Lock()
        self._holder = threading.local()

    def _acquire(self) -> None:
        if not self._writer.acquire(timeout=SQLITE_PRAGMAS["busy_timeout"] / 1000):
            raise OperationalError("database is locked")
        self._holder.held = True

    def begin(self, lock_type=None):
        self._acquire()
        try:
            super().begin(lock_type)
        except BaseException:
            self._release()
            raise

    def execute_sql(self, sql, params=None, *args, **kwargs):
        if self.in_transaction() or not _WRITE.match(sql):
            return super().execute_sql(sql, params, *args, **kwargs)
        self._acquire()  # a write outside a transaction (autocommit) queues too
        try:
            return super().execute_sql(sql, params, *args, **kwargs)
        finally:
            self._release()

    def commit(self):
        super().commit()  # if COMMIT fails, the transaction is open until its rollback
        self._release()

    def rollback(self):
        try:
            super().rollback()
        finally:
            self._release()

    def _close(self, conn, close_conn=False):
        """A connection given back mid-transaction (its thread gave up) frees the lock."""
        try:
            super()._close(conn, close_conn)
        finally:
            self._release()

    def _release(self) -> None:
        if getattr(self._holder, "held", False):
            self._holder.held = False
            self._writer.release()


def open_database(url: str):
    scheme, sep, rest = url.partition("://")
    if scheme.startswith("sqlite") and "+" not in scheme:
        # A pooled connection moves between threads, one at a time.
        return SerialSqliteDatabase(**parse(url), pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE",
                                    check_same_thread=False, **POOL)
    if "+" not in scheme:
        url = f"{scheme}+pool{sep}{rest}"
    return connect(url, **POOL)


def close_all() -> None:
    """Close every pooled connection (tests, and processes that re-point the proxy)."""
    if not database.is_closed():
        database.close()
    if hasattr(database.obj, "close_all"):
        database.obj.close_all()


def is_sqlite() -> bool:
    return isinstance(database.obj, SqliteDatabase)


class _Slot:
    """Where one argument of a Prepared query goes."""

    def __init__(self, index: int):
        self.index = index


class Prepared:
    """A query whose SQL is built once per kind of database, then only run.

    peewee builds SQL anew on every execution, and for a wide join that costs
    several times what SQLite takes to answer it: the order status partial
    (polled every two seconds by every open order page) and Buy run such
    queries. `build(*slots)` returns the query with a slot where each argument
    goes; `first(*args)` runs it with the arguments, already in the database's
    form (ids, text), in their places.
    """

    def __init__(self, build):
        self._build = build
        self._built: dict[type, tuple] = {}
        self._resolved: dict[type, dict] = {}

    def _prepared(self, count: int) -> tuple:
        kind = type(database.obj)
        built = self._built.get(kind)
        if built is None:
            query = self._build(*(Value(_Slot(index), converter=False) for index in range(count)))
            sql, params = query.sql()
            slots = [param.index if isinstance(param, _Slot) else None for param in params]
            if sorted(slot for slot in slots if slot is not None) != list(range(count)):
                raise ValueError("every argument must reach the SQL exactly once")
            built = self._built[kind] = (query, sql, params, slots)
        return built

    def _run(self, args):
        query, sql, params, slots = self._prepared(len(args))
        values = [param if slot is None else args[slot] for param, slot in zip(params, slots)]
        return query, database.execute_sql(sql, values)

    def first(self, *args):
        """The first row as the query would give it (models, with joins), or None.

        peewee's cursor wrapper works out, for every result, which column goes
        to which model and attribute; for the order page's four-table join that
        cost more than the query. The answer depends only on the query, so it
        is worked out once and given to each new wrapper."""
        query, cursor = self._run(args)
        wrapper = query._get_cursor_wrapper(cursor)
        kind = type(database.obj)
        resolved = self._resolved.get(kind)
        if resolved is None:
            fresh = set(vars(wrapper))
            wrapper.initialize()
            resolved = self._resolved[kind] = {
                name: value for name, value in vars(wrapper).items() if name not in fresh}
        else:
            vars(wrapper).update(resolved)
        wrapper.initialized = True
        for row in wrapper:
            return row
        return None

    def row(self, *args) -> tuple | None:
        """The first row as the database driver gives it (no conversion), or None."""
        return self._run(args)[1].fetchone()

    def execute(self, *args) -> int:
        """Run an UPDATE or DELETE: how many rows it changed."""
        return self._run(args)[1].rowcount


_INSERTS: dict[tuple, tuple] = {}


def insert_row(instance) -> int:
    """INSERT a new model instance (auto-increment id not yet set) with SQL
    built once per model, set of columns and kind of database; returns its id.
    Model.create builds the INSERT anew each time, and Buy inserts four rows."""
    model, data = type(instance), instance.__data__
    names = tuple(sorted(name for name in data if name != model._meta.primary_key.name))
    key = (model, type(database.obj), names)
    built = _INSERTS.get(key)
    if built is None:
        fields = [model._meta.fields[name] for name in names]
        query = model.insert({field: Value(_Slot(index), converter=False)
                              for index, field in enumerate(fields)})
        returning = bool(database.obj.returning_clause)
        if returning:
            query = query.returning(model._meta.primary_key)
        sql, params = query.sql()
        ordered = [fields[param.index] for param in params]  # peewee's column order
        if len(ordered) != len(fields):
            raise ValueError("every column must reach the INSERT exactly once")
        built = _INSERTS[key] = (sql, ordered, returning)
    sql, fields, returning = built
    cursor = database.execute_sql(sql, [field.db_value(data[field.name]) for field in fields])
    return cursor.fetchone()[0] if returning else cursor.lastrowid


def init_app(app) -> None:
    database.initialize(open_database(app.config["DATABASE_URL"]))

    @app.teardown_appcontext
    def close_connection(_exc):
        if not database.is_closed():
            database.close()
