"""Payment-method fees in the server's total, per-method payment windows, schema migrations."""
from datetime import timedelta

import pytest
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, migrate

from topup import create_app, schema
from topup.cli import main
from topup.db import database, is_sqlite
from topup.models import (CustomRate, Order, PluginProblem, Price, Product, PromoCode, PromoUse,
                          SchemaVersion, SignInLink, SignInSession, WorkerHeartbeat, utcnow)
from topup.money import Money

from tests.conftest import buy, package_id, place_order


@pytest.fixture
def config(config):
    config["PLUGINS"]["sandbox_payment"].update(fee_percent="2.5", fee_fixed={"USD": 30})
    return config


def test_the_fee_is_shown_before_buy_and_added_by_the_server(client):
    page = client.get("/tiktok-coins?country=US").get_data(as_text=True)
    assert "fee 2.5% + $0.30" in page
    order = place_order(client, coins=700, amount="1", fee="0")
    price = Price.get(Price.package == package_id(700), Price.currency == "USD").amount  # 938
    fee = round(price * 0.025) + 30  # 23.45 rounds half up to 23, + 30
    assert (order.fee, order.amount) == (fee, price + fee) == (53, 991)
    assert order.latest_payment().amount == order.amount
    summary = client.get(f"/orders/{order.public_id}").get_data(as_text=True)
    assert "Payment fee" in summary and "$0.53" in summary and "$9.91" in summary


def test_percent_fees_round_half_up_in_minor_units(app):
    provider = app.extensions["topup"].providers["sandbox"]
    assert provider.fee(Money(1000, "BRL")) == Money(25, "BRL")  # no fixed part for BRL
    assert provider.fee(Money(20, "USD")) == Money(31, "USD")  # 0.5 rounds up, + 30
    assert provider.fee(Money(1, "VND")) == Money(0, "VND")


@pytest.mark.parametrize("settings", [{"fee_percent": "-1"}, {"fee_fixed": {"USD": -5}},
                                      {"fee_percent": "lots"}, {"fee_percent": "NaN"}])
def test_bad_fee_settings_leave_the_method_out(config, tmp_path, monkeypatch, settings):
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path))
    config["PLUGINS"]["sandbox_payment"].update(settings)
    registry = create_app(config).extensions["topup"]
    assert "sandbox" not in registry.providers and "sandbox_payment" in registry.errors


def test_a_method_sets_its_own_payment_window(app, client, monkeypatch):
    monkeypatch.setattr(type(app.extensions["topup"].providers["sandbox"]), "expiry_seconds",
                        3 * 24 * 3600)
    order = place_order(client)
    assert timedelta(days=2, hours=23) < order.expires_at - utcnow() <= timedelta(days=3)


def _back_to_version(version: int) -> None:
    """Undo the migrations after version on this database, as if it were that old."""
    migrator = SqliteMigrator(database.obj) if is_sqlite() else PostgresqlMigrator(database.obj)
    if is_sqlite():  # SQLite drops columns by copying tables; keep payments through the copy
        database.pragma("foreign_keys", 0)
    # 6: plugin problems
    database.drop_tables([PluginProblem])
    # 5: custom amounts and promo codes
    database.drop_tables([PromoUse, PromoCode, CustomRate])
    migrate(*(migrator.drop_column("product", name)
              for name in ("custom_enabled", "custom_min", "custom_max")),
            migrator.drop_column("order", "discount"), migrator.drop_column("order", "promo_code"))
    if version < 4:
        database.drop_tables([SignInSession, SignInLink, WorkerHeartbeat])
    if version < 3:
        migrate(migrator.drop_column("payment", "checked_at"))
    if version < 2:
        migrate(migrator.drop_column("order", "fee"))
    if is_sqlite():
        database.pragma("foreign_keys", 1)
    SchemaVersion.delete().execute()
    SchemaVersion.create(version=version)


def test_migrating_a_version_1_database_brings_it_to_the_current_schema(app, client):
    order = place_order(client)
    _back_to_version(1)
    assert database.execute_sql("SELECT count(*) FROM payment").fetchone()[0] == 1

    result = app.test_cli_runner().invoke(main, ["migrate"])
    assert result.exit_code == 0 and "Applied migrations: [2, 3, 4, 5, 6]" in result.output
    assert schema.current_version() == 6
    assert SignInLink.select().count() == 0  # the table is back
    assert Order.get_by_id(order.id).fee == 0  # existing orders: no fee
    # Nothing that refers to the order was lost on the way (SQLite copies tables).
    assert Order.get_by_id(order.id).latest_payment().checked_at is None
    assert order.events.count() == 1
    again = app.test_cli_runner().invoke(main, ["migrate"])
    assert "Schema is up to date." in again.output
    assert buy(client).status_code == 303


def test_migrating_a_version_4_database_keeps_its_orders_and_sells_promos(app, client):
    order = place_order(client, coins=700)
    before = (order.amount, order.fee, order.quantity, order.latest_payment().amount)
    _back_to_version(4)
    columns = {c.name for c in database.get_columns("order")}
    assert "discount" not in columns and not database.table_exists("promocode")

    result = app.test_cli_runner().invoke(main, ["migrate"])
    assert result.exit_code == 0 and "Applied migrations: [5, 6]" in result.output
    assert schema.current_version() == 6
    assert database.table_exists("pluginproblem")
    kept = Order.get_by_id(order.id)
    assert (kept.amount, kept.fee, kept.quantity, kept.latest_payment().amount) == before
    assert (kept.discount, kept.promo_code) == (0, None)  # old orders: no discount
    assert kept.events.count() == 1 and kept.payments.count() == 1
    product = Product.get(Product.slug == "tiktok-coins")
    assert (product.custom_enabled, product.custom_min, product.custom_max) == (False, None, None)
    PromoCode.create(code="AFTER", kind="percent", percent_bp=1000)
    discounted = place_order(client, coins=700, promo="after")
    assert (discounted.promo_code, discounted.discount) == ("AFTER", 94)
    assert PromoUse.select().count() == 1
