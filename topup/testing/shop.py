"""A throwaway shop for contract tests: its own SQLite file, one product, and
only the plugins under test (plus the sandboxes, to pay and to deliver).

Independent of topup's own tests/ so that a plugin package can use it."""
from __future__ import annotations

import importlib
import secrets
from importlib.metadata import entry_points

import pytest

from topup.models import Order, Package, Price, Product
from topup.money import Money, digits
from topup.payments import PaymentEvent

SANDBOXES = {"sandbox_payment": "topup_plugins.sandbox.payment",
             "sandbox_delivery": "topup_plugins.sandbox.delivery"}
SANDBOX_SECRET = "whsec_contract_" + "k" * 24
PRODUCT_SLUG = "tiktok-coins"
PACKAGE_QUANTITY = 70
ACCOUNT_ID = "contract.buyer"


def _entry_point_names() -> dict[str, str]:
    """Module path -> name, for every installed plugin (entry point group "topup")."""
    return {ep.module: ep.name for ep in entry_points(group="topup")}


def plugin_of(cls, hook: str) -> tuple[str, object]:
    """(plugin name, module) a provider or backend class is registered under:
    the closest enclosing module installed as a plugin (an entry point or a
    built-in), else the closest one implementing `hook`."""
    from topup.plugins import DEFAULT_PLUGINS

    known = {**{path: name for name, path in DEFAULT_PLUGINS.items()}, **_entry_point_names()}
    parts = cls.__module__.split(".")
    prefixes = [".".join(parts[:end]) for end in range(len(parts), 0, -1)]
    for path in prefixes:
        if path in known:
            return known[path], importlib.import_module(path)
    for path in prefixes:
        module = importlib.import_module(path)
        if hasattr(module, hook):
            return path.rsplit(".", 1)[-1], module
    raise LookupError(f"no module around {cls.__module__} implements {hook}: "
                      "set `plugin` (and `plugin_name`) on the contract class")


def build_app(tmp_path, monkeypatch, plugins: dict, settings: dict, extra_config=None):
    """The app, with only `plugins` ({name: module}) and the sandboxes loaded.

    The plugins take the built-ins' registration path (DEFAULT_PLUGINS, by
    name); every other installed plugin is disabled for the test."""
    from topup import create_app, plugins as loading

    wanted = {**SANDBOXES, **{name: module.__name__ for name, module in plugins.items()}}
    monkeypatch.setattr(loading, "DEFAULT_PLUGINS", wanted)
    instance = tmp_path / "instance"
    (instance / "plugins").mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(instance))
    config = {
        "TESTING": True,
        "SECRET_KEY": secrets.token_hex(16),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'contract.sqlite'}",
        "DISABLED_PLUGINS": sorted(set(_entry_point_names().values()) - set(wanted)),
        "PLUGINS": {"sandbox_payment": {"webhook_secret": SANDBOX_SECRET}, **settings},
        "RATELIMIT_ENABLED": False,
        "DELIVERY_RETRY_BASE_SECONDS": 0,
        **(extra_config or {}),
    }
    return create_app(config)


def create_tables(app) -> None:
    from topup import schema

    with app.app_context():
        pm = app.extensions["topup"].pm
        schema.drop_all(pm)
        schema.create_all(pm)


def seed_product(delivery_backend: str, currency: str, amount: int) -> Product:
    """One product, one package of PACKAGE_QUANTITY, priced `amount` minor units in currency."""
    product = Product.create(slug=PRODUCT_SLUG, name="TikTok Coins", unit="coins",
                             account_kind="tiktok", delivery_backend=delivery_backend)
    package = Package.create(product=product, quantity=PACKAGE_QUANTITY)
    Price.create(package=package, currency=currency, amount=amount)
    return product


def default_amount(provider_class, currency: str) -> int:
    """100 major units of currency, moved inside the provider's limits."""
    amount = 100 * 10 ** digits(currency)
    if provider_class is not None:
        low = provider_class.min_amount.get(currency)
        high = provider_class.max_amount.get(currency)
        amount = max(amount, low) if low is not None else amount
        amount = min(amount, high) if high is not None else amount
    return amount


def place_order(product: Product, *, method: str, country: str, currency: str,
                account_id: str = ACCOUNT_ID) -> Order:
    """Place an order and start its payment, as checkout does. Needs a request context."""
    from flask import current_app, url_for

    from topup import orders

    order, _created = orders.create_order(
        product=product, package=product.packages.first(), country=country, currency=currency,
        account_id=account_id, account_nickname=None, payment_method=method, email=None,
        locale="en", idempotency_key=secrets.token_urlsafe(24))
    provider = current_app.extensions["topup"].providers[method]
    orders.start_payment(order, provider, return_url=url_for(
        "orders.show", public_id=order.public_id, _external=True))
    return Order.get_by_id(order.id)


def pay_with_sandbox(order: Order) -> str:
    """Apply the sandbox's "succeeded" event for an order placed with method "sandbox"."""
    from topup import orders

    payment = order.latest_payment()
    return orders.apply_payment_event("sandbox", PaymentEvent(
        event_id=f"evt_{payment.provider_ref}_succeeded", kind="succeeded",
        payment_ref=payment.provider_ref, amount=Money(payment.amount, payment.currency)))


class PluginSetup:
    """The wiring both setups share: which plugin module is under test (found
    from the class it registers, unless `plugin` says), under which name, and
    its settings. Subclasses set `_registered` and `_hook`."""

    plugin = None  # the module with the hookimpls; default: found from the class
    plugin_name: str | None = None  # default: its entry point's or built-in's name
    settings: dict = {}  # PLUGINS[plugin_name]; override topup_settings if they need fixtures
    _registered: str  # the attribute naming the class under test
    _hook: str  # the hook that registers it

    def _plugin(self) -> tuple[str, object]:
        if self.plugin is not None:
            return self.plugin_name or self.plugin.__name__.rsplit(".", 1)[-1], self.plugin
        name, module = plugin_of(getattr(self, self._registered), self._hook)
        return self.plugin_name or name, module

    @pytest.fixture
    def topup_plugins(self):
        name, module = self._plugin()
        return {name: module}

    @pytest.fixture
    def topup_settings(self):
        return {self._plugin()[0]: dict(self.settings)}
