"""The demo catalog: TikTok Coins in eight currencies, priced from one USD list.

Prices are stored per currency in minor units; this module only seeds them.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from topup.db import database
from topup.models import Package, Price, Product
from topup.money import Money, digits

# coins -> US cents
USD_PRICES = {30: 40, 70: 94, 350: 469, 700: 938, 1400: 1875, 3500: 4688, 7000: 9375,
              17500: 23438}
# per USD, and the step prices are rounded to (in major units)
RATES = {
    "USD": (Decimal("1"), Decimal("0.01")),
    "IDR": (Decimal("16000"), Decimal("1000")),
    "PHP": (Decimal("58"), Decimal("1")),
    "BRL": (Decimal("5.5"), Decimal("0.01")),
    "THB": (Decimal("35"), Decimal("1")),
    "INR": (Decimal("85"), Decimal("1")),
    "VND": (Decimal("25000"), Decimal("1000")),
    "MXN": (Decimal("18"), Decimal("0.5")),
    "EUR": (Decimal("0.92"), Decimal("0.01")),
}


def local_price(us_cents: int, currency: str) -> Money:
    rate, step = RATES[currency]
    major = Decimal(us_cents) / 100 * rate
    rounded = (major / step).quantize(Decimal(1), rounding=ROUND_HALF_UP) * step
    return Money.from_decimal(max(rounded, step).quantize(Decimal(1).scaleb(-digits(currency))),
                              currency)


def seed() -> Product:
    """Create the TikTok Coins product with its packages and prices, once."""
    with database.atomic():
        product, created = Product.get_or_create(
            slug="tiktok-coins",
            defaults={"name": "TikTok Coins", "unit": "coins", "account_kind": "tiktok",
                      "delivery_backend": "sandbox"})
        if created:
            for sort, (coins, cents) in enumerate(USD_PRICES.items()):
                package = Package.create(product=product, quantity=coins, sort=sort)
                for currency in RATES:
                    Price.create(package=package, currency=currency,
                                 amount=local_price(cents, currency).amount)
    return product
