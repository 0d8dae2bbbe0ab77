"""topup's contract kit for plugin authors, a pytest plugin (entry point
pytest11 "topup": active wherever topup is installed).

Subclass PaymentProviderContract or DeliveryBackendContract in your own
tests, point it at your class, and the shop's expectations of a plugin run
against it (docs/plugins.md, "Testing your plugin"). The fixtures below build
a shop of their own (SQLite under tmp_path), so no conftest is needed.
"""
from __future__ import annotations

import pytest

pytest.register_assert_rewrite("topup.testing.payments", "topup.testing.delivery")

from topup.testing import shop  # noqa: E402
from topup.testing.delivery import DeliveryBackendContract, DeliveryBackendSetup  # noqa: E402
from topup.testing.payments import PaymentProviderContract, PaymentProviderSetup  # noqa: E402

__all__ = ["DeliveryBackendContract", "DeliveryBackendSetup", "PaymentProviderContract",
           "PaymentProviderSetup", "shop"]


# What the shop under test holds; a contract class overrides these.


@pytest.fixture
def topup_plugins() -> dict:
    """{plugin name: module} to load besides the sandboxes."""
    return {}


@pytest.fixture
def topup_settings() -> dict:
    """PLUGINS settings, by plugin name."""
    return {}


@pytest.fixture
def topup_country() -> str:
    return "US"


@pytest.fixture
def topup_currency(topup_country) -> str:
    from topup.regions import COUNTRIES

    assert topup_country in COUNTRIES, (
        f"topup does not sell in {topup_country!r}; choose one of {sorted(COUNTRIES)}")
    return COUNTRIES[topup_country].currency


@pytest.fixture
def topup_payment_method() -> str:
    return "sandbox"


@pytest.fixture
def topup_delivery_backend() -> str:
    return "sandbox"


@pytest.fixture
def topup_price(topup_app, topup_payment_method, topup_currency) -> int:
    """The package's price in minor units: 100 major units, within the method's limits."""
    provider = topup_app.extensions["topup"].providers.get(topup_payment_method)
    return shop.default_amount(type(provider) if provider else None, topup_currency)


@pytest.fixture
def topup_account() -> str:
    return shop.ACCOUNT_ID


# The shop itself.


@pytest.fixture
def topup_app(tmp_path, monkeypatch, topup_plugins, topup_settings):
    """A fresh app and database; a request context is active during the test."""
    from topup.db import database

    app = shop.build_app(tmp_path, monkeypatch, topup_plugins, topup_settings)
    shop.create_tables(app)
    context = app.test_request_context()
    context.push()
    try:
        yield app
    finally:
        context.pop()
        if not database.is_closed():
            database.close()


@pytest.fixture
def topup_product(topup_app, topup_delivery_backend, topup_currency, topup_price):
    return shop.seed_product(topup_delivery_backend, topup_currency, topup_price)


@pytest.fixture
def topup_client(topup_app):
    return topup_app.test_client()


@pytest.fixture
def topup_place_order(topup_product, topup_payment_method, topup_country, topup_currency,
                      topup_account):
    """Place another order like topup_order: topup_place_order() -> Order."""
    def place(**changes):
        options = dict(method=topup_payment_method, country=topup_country,
                       currency=topup_currency, account_id=topup_account)
        return shop.place_order(topup_product, **{**options, **changes})
    return place


@pytest.fixture
def topup_order(topup_place_order):
    """A placed order, its payment started with topup_payment_method."""
    return topup_place_order()


@pytest.fixture
def topup_provider(topup_app, topup_payment_method):
    registry = topup_app.extensions["topup"]
    assert topup_payment_method in registry.providers, (
        f"payment provider {topup_payment_method!r} was not built; errors: {registry.errors}, "
        f"not configured: {registry.not_configured}")
    return registry.providers[topup_payment_method]


@pytest.fixture
def topup_backend(topup_app, topup_delivery_backend):
    registry = topup_app.extensions["topup"]
    assert topup_delivery_backend in registry.backends, (
        f"delivery backend {topup_delivery_backend!r} was not built; errors: {registry.errors}, "
        f"not configured: {registry.not_configured}")
    return registry.backends[topup_delivery_backend]
