"""Tables only. Status changes belong to topup.orders; nothing else writes them."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from peewee import (
    BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, Model,
    TextField,
)

from topup.db import Prepared, database, insert_row
from topup.money import Money

SCHEMA_VERSION = 6


def utcnow() -> datetime:
    """Naive UTC: the same on SQLite and Postgres `timestamp` columns."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class JSONField(TextField):
    def db_value(self, value):
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def python_value(self, value):
        return None if value is None else json.loads(value)


class BaseModel(Model):
    class Meta:
        database = database

    @classmethod
    def create(cls, **values):
        """Model.create, with the INSERT prepared (topup.db.insert_row)."""
        meta = cls._meta
        if not meta.auto_increment or values.get(meta.primary_key.name) is not None:
            return super().create(**values)
        instance = cls(**values)
        instance._pk = insert_row(instance)
        instance._dirty.clear()
        return instance


class SchemaVersion(BaseModel):
    version = IntegerField()
    applied_at = DateTimeField(default=utcnow)


class Product(BaseModel):
    slug = CharField(unique=True)
    name = CharField()
    unit = CharField(default="coins")  # what a package counts
    account_kind = CharField(default="tiktok")  # see topup.accounts
    delivery_backend = CharField()
    enabled = BooleanField(default=True)
    sort = IntegerField(default=0)
    # Custom amounts (topup.pricing): the buyer types a quantity from custom_min
    # to custom_max, priced by the product's CustomRate in the order's currency.
    custom_enabled = BooleanField(default=False)
    custom_min = IntegerField(null=True)
    custom_max = IntegerField(null=True)

    @classmethod
    def listed(cls):
        return cls.select().where(cls.enabled).order_by(cls.sort, cls.id)


class Package(BaseModel):
    """A fixed quantity sold at its Prices. Each product offering custom amounts
    also has one hidden row with quantity CUSTOM (0), never enabled and never
    priced: custom orders refer to it (Order.package stays non-null) and record
    the typed quantity in Order.quantity."""
    CUSTOM = 0

    product = ForeignKeyField(Product, backref="packages", on_delete="CASCADE")
    quantity = IntegerField()
    enabled = BooleanField(default=True)
    sort = IntegerField(default=0)

    @property
    def is_custom(self) -> bool:
        return self.quantity == self.CUSTOM

    @classmethod
    def custom_for(cls, product) -> "Package":
        """The product's hidden custom-amount row, created on first use."""
        row = cls.get_or_none(cls.product == product, cls.quantity == cls.CUSTOM)
        if row is None:
            row = cls.create(product=product, quantity=cls.CUSTOM, enabled=False, sort=-1)
        return row

    @classmethod
    def priced_in(cls, product, currency):
        """Enabled packages of a product that have a price in currency, with it."""
        return (cls.select(cls, Price)
                .join(Price)
                .where(cls.product == product, cls.enabled, Price.currency == currency)
                .order_by(cls.sort, cls.quantity))

    @classmethod
    def priced(cls, product, currency: str, package_id: int) -> "Package | None":
        """One of priced_in, by id (every Buy asks, twice)."""
        return _PRICED_PACKAGE.first(product.id, currency, package_id)


class Price(BaseModel):
    package = ForeignKeyField(Package, backref="prices", on_delete="CASCADE")
    currency = CharField(max_length=3)
    amount = IntegerField()  # minor units

    class Meta:
        indexes = ((("package", "currency"), True),)

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)


class CustomRate(BaseModel):
    """A product's custom-amount price in one currency: minor units per 1,000
    units (coins), an exact integer (USD 1340 = $13.40 per 1,000 coins)."""
    product = ForeignKeyField(Product, backref="custom_rates", on_delete="CASCADE")
    currency = CharField(max_length=3)
    per_thousand = IntegerField()  # minor units per 1,000 units

    class Meta:
        indexes = ((("product", "currency"), True),)


class PromoCode(BaseModel):
    """A discount code. code is stored upper-case (codes are case-insensitive).
    kind "percent": percent_bp basis points (1000 = 10%); kind "fixed": fixed
    maps currency -> minor units off (a currency it does not name: not usable)."""
    code = CharField(unique=True)
    kind = CharField(default="percent")
    percent_bp = IntegerField(null=True)
    fixed = JSONField(null=True)
    product = ForeignKeyField(Product, null=True, on_delete="CASCADE")
    country = CharField(max_length=2, null=True)
    currency = CharField(max_length=3, null=True)
    valid_from = DateTimeField(null=True)  # naive UTC
    valid_until = DateTimeField(null=True)  # naive UTC, exclusive
    max_uses = IntegerField(null=True)
    uses = IntegerField(default=0)  # counted by topup.orders.create_order
    max_uses_per_email = IntegerField(null=True)  # set: an order needs an e-mail
    enabled = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)


class Order(BaseModel):
    public_id = CharField(unique=True)
    idempotency_key = CharField(unique=True)
    product = ForeignKeyField(Product)
    package = ForeignKeyField(Package)
    quantity = IntegerField()
    account_id = CharField()
    account_nickname = CharField(null=True)
    country = CharField(max_length=2)
    currency = CharField(max_length=3)
    amount = IntegerField()  # minor units, computed by the server: price + fee
    fee = IntegerField(default=0)  # minor units, the payment method's part of amount
    discount = IntegerField(default=0)  # minor units taken off the price by promo_code
    promo_code = CharField(null=True)
    email = CharField(null=True)
    payment_method = CharField()
    locale = CharField(default="en")
    status = CharField(index=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(index=True)

    @property
    def total(self) -> Money:
        return Money(self.amount, self.currency)

    @property
    def fee_money(self) -> Money:
        return Money(self.fee, self.currency)

    @property
    def discount_money(self) -> Money:
        return Money(self.discount, self.currency)

    def latest_payment(self):
        return _LATEST_PAYMENT.first(self.id)

    @classmethod
    def by_idempotency_key(cls, key: str) -> "Order | None":
        return _ORDER_BY_KEY.first(key)


class PromoUse(BaseModel):
    """One order's use of a promo code (per-e-mail limits count these)."""
    promo = ForeignKeyField(PromoCode, backref="used", on_delete="CASCADE")
    order = ForeignKeyField(Order, unique=True, on_delete="CASCADE")
    email = CharField(null=True, index=True)  # lower-cased
    created_at = DateTimeField(default=utcnow)


class Payment(BaseModel):
    order = ForeignKeyField(Order, backref="payments", on_delete="CASCADE")
    provider = CharField()
    provider_ref = CharField(null=True)  # the provider's id for this payment
    status = CharField(default="created")
    amount = IntegerField()
    currency = CharField(max_length=3)
    action = JSONField(null=True)  # what the buyer must do, as the provider returned it
    error = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    checked_at = DateTimeField(null=True)  # last asked by the reconciler

    class Meta:
        indexes = ((("provider", "provider_ref"), True),)

    @property
    def total(self) -> Money:
        return Money(self.amount, self.currency)


class Delivery(BaseModel):
    """The outbox row: inserted with the `paid` transition, worked by the worker
    (statuses in topup.orders)."""
    order = ForeignKeyField(Order, backref="deliveries", unique=True, on_delete="CASCADE")
    backend = CharField()
    status = CharField(default="pending", index=True)
    attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField(default=utcnow, index=True)
    lease_until = DateTimeField(null=True)
    reference = CharField(null=True)
    last_error = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)


class WebhookEvent(BaseModel):
    """One row per provider event id: the UNIQUE key makes replays harmless."""
    provider = CharField()
    event_id = CharField()
    order = ForeignKeyField(Order, null=True, on_delete="SET NULL")
    outcome = CharField(null=True)
    received_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("provider", "event_id"), True),)


class OrderEvent(BaseModel):
    """The order's timeline: every transition and every notable attempt."""
    order = ForeignKeyField(Order, backref="events", on_delete="CASCADE")
    kind = CharField()
    from_status = CharField(null=True)
    to_status = CharField(null=True)
    message = TextField(null=True)
    actor = CharField(default="system")
    created_at = DateTimeField(default=utcnow)


class SignInSession(BaseModel):
    """A signed-in person, server side: the cookie holds only a random token
    (its SHA-256 is stored), so signing out or expiry ends it everywhere."""
    token_hash = CharField(unique=True)
    subject = CharField()  # an e-mail address, or "sub:<issuer subject>"
    role = CharField()  # "operator" or "buyer"
    method = CharField()  # how they signed in: "oidc" or "link"
    created_at = DateTimeField(default=utcnow)
    last_seen_at = DateTimeField(default=utcnow)


class SignInLink(BaseModel):
    """A one-time, short-lived operator sign-in link (`topup admin-link`)."""
    token_hash = CharField(unique=True)
    subject = CharField()
    expires_at = DateTimeField()
    used_at = DateTimeField(null=True)


class WorkerHeartbeat(BaseModel):
    """Each worker process says it is alive (for /healthz and `topup reconcile`)."""
    name = CharField(unique=True)  # host:pid
    seen_at = DateTimeField(default=utcnow)


class PluginProblem(BaseModel):
    """A plugin's latest failure while the shop ran, from whichever process met
    it (a server, a worker), kept until the operator dismisses it (topup.problems)."""
    plugin = CharField(unique=True)
    message = TextField()
    count = IntegerField(default=1)
    first_at = DateTimeField(default=utcnow)
    last_at = DateTimeField(default=utcnow)
    process = CharField()  # host:pid of the last one


CORE_MODELS = [SchemaVersion, Product, Package, Price, CustomRate, PromoCode, Order, PromoUse,
               Payment, Delivery, WebhookEvent, OrderEvent, SignInSession, SignInLink,
               WorkerHeartbeat, PluginProblem]


# Prepared: on the path of every Buy (see topup.db.Prepared).
_PRICED_PACKAGE = Prepared(lambda product, currency, package: (
    Package.priced_in(product, currency).where(Package.id == package).limit(1)))
_LATEST_PAYMENT = Prepared(lambda order: (
    Payment.select().where(Payment.order == order).order_by(Payment.id.desc()).limit(1)))
_ORDER_BY_KEY = Prepared(lambda key: Order.select().where(Order.idempotency_key == key).limit(1))
