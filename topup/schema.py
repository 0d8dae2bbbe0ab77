"""Creating tables and recording the schema version.

`topup init` creates every table (core and plugins' register_models) and
records SCHEMA_VERSION. MIGRATIONS maps a version to the function that brings a
database from the version before it; `topup migrate` runs the missing ones.
"""
from __future__ import annotations

from topup.db import database, is_sqlite
from topup.models import CORE_MODELS, SCHEMA_VERSION, SchemaVersion

def _add_column(db, model, name):
    from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, migrate as run

    migrator = SqliteMigrator(db.obj) if is_sqlite() else PostgresqlMigrator(db.obj)
    run(migrator.add_column(model._meta.table_name, name, model._meta.fields[name]))


def _add_order_fee(db):
    """2: orders record the payment method's fee (part of their amount)."""
    from topup.models import Order
    _add_column(db, Order, "fee")


def _add_payment_checked_at(db):
    """3: the reconciler records when it last asked about a payment."""
    from topup.models import Payment
    _add_column(db, Payment, "checked_at")


def _add_sign_in_tables(db):
    """4: server-side sign-in sessions, one-time operator links, worker heartbeats."""
    from topup.models import SignInLink, SignInSession, WorkerHeartbeat
    db.create_tables([SignInSession, SignInLink, WorkerHeartbeat], safe=True)


def _add_custom_amounts_and_promos(db):
    """5: custom amounts (product columns, per-currency rates) and promo codes
    (codes, their uses, and the order's discount and code)."""
    from topup.models import CustomRate, Order, Product, PromoCode, PromoUse
    for name in ("custom_enabled", "custom_min", "custom_max"):
        _add_column(db, Product, name)
    for name in ("discount", "promo_code"):
        _add_column(db, Order, name)
    db.create_tables([CustomRate, PromoCode, PromoUse], safe=True)


def _add_plugin_problems(db):
    """6: plugin failures recorded where every process's are seen."""
    from topup.models import PluginProblem
    db.create_tables([PluginProblem], safe=True)


# version -> function(database) that reaches it
MIGRATIONS: dict = {2: _add_order_fee, 3: _add_payment_checked_at, 4: _add_sign_in_tables,
                    5: _add_custom_amounts_and_promos, 6: _add_plugin_problems}


def all_models(pm) -> list:
    return CORE_MODELS + [model for models in pm.hook.register_models() for model in models]


def current_version() -> int | None:
    if not database.table_exists(SchemaVersion._meta.table_name):
        return None
    row = SchemaVersion.select().order_by(SchemaVersion.version.desc()).first()
    return row.version if row else None


def create_all(pm) -> None:
    with database.atomic():
        database.create_tables(all_models(pm), safe=True)
        if current_version() is None:
            SchemaVersion.create(version=SCHEMA_VERSION)


def migrate(pm) -> list[int]:
    """Run the missing migrations, each in its own transaction.

    SQLite changes some columns by copying the table and dropping the old one;
    with foreign keys on, that drop would cascade-delete every row referring to
    it (an order's payments, deliveries, events). So, as SQLite's ALTER TABLE
    guide says, foreign keys are off while migrating and checked afterwards.
    """
    applied = []
    version = current_version()
    if is_sqlite():
        database.pragma("foreign_keys", 0)
    try:
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with database.atomic():
                MIGRATIONS[target](database)
                if is_sqlite() and database.execute_sql("PRAGMA foreign_key_check").fetchall():
                    raise RuntimeError(f"migration {target} broke a foreign key; rolled back")
                SchemaVersion.create(version=target)
            applied.append(target)
    finally:
        if is_sqlite():
            database.pragma("foreign_keys", 1)
    database.create_tables(all_models(pm), safe=True)  # tables new plugins brought
    return applied


def drop_all(pm) -> None:
    database.drop_tables(all_models(pm), safe=True, cascade=not is_sqlite())
