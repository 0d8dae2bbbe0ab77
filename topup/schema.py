"""Creating tables and recording the schema version.

`topup init` creates every table (core and plugins' register_models) and
records SCHEMA_VERSION. MIGRATIONS maps a version to the function that brings a
database from the version before it; `topup migrate` runs the missing ones.
"""
from __future__ import annotations

from topup.db import database, is_sqlite
from topup.models import CORE_MODELS, SCHEMA_VERSION, SchemaVersion

def _add_order_fee(db):
    """2: orders record the payment method's fee (part of their amount)."""
    from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, migrate as run
    from topup.models import Order

    migrator = SqliteMigrator(db.obj) if is_sqlite() else PostgresqlMigrator(db.obj)
    run(migrator.add_column(Order._meta.table_name, "fee", Order.fee))


MIGRATIONS: dict = {2: _add_order_fee}  # version -> function(database) that reaches it


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
    applied = []
    version = current_version()
    for target in range(version + 1, SCHEMA_VERSION + 1):
        with database.atomic():
            MIGRATIONS[target](database)
            SchemaVersion.create(version=target)
        applied.append(target)
    database.create_tables(all_models(pm), safe=True)  # tables new plugins brought
    return applied


def drop_all(pm) -> None:
    database.drop_tables(all_models(pm), safe=True, cascade=not is_sqlite())
