"""topup.pricing: custom amount prices rounded per currency, quantity checks,
promo discounts (percent and fixed, never more than the price), promo checks,
and the quote's order of operations (the fee on the discounted price)."""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from topup import pricing
from topup.models import Order, Product, PromoCode, PromoUse
from topup.money import Money

NOW = datetime(2025, 6, 1, 12, 0)


@pytest.fixture
def ctx(app):
    with app.test_request_context():
        yield


@pytest.mark.parametrize("quantity, per_thousand, currency, expected", [
    (1234, 1340, "USD", 1654),  # 1653.56 cents
    (125, 1340, "USD", 168),  # 167.5 rounds half up
    (1, 100, "USD", 1),  # 0.1 cent: never free, one cent
    (333, 7370, "BRL", 2454),  # 2454.21
    (70, 21428600, "IDR", 1500000),  # Rp15,000.02: whole rupiah
    (75, 21428600, "IDR", 1607100),  # Rp16,071.45 -> Rp16,071
    (1, 50000, "IDR", 100),  # Rp0.50 rounds half up to Rp1
    (70, 334000, "VND", 23380),
    (1, 1500, "VND", 2),  # 1.5 dong rounds half up
    (3, 334000, "VND", 1002),
])
def test_custom_prices_round_half_up_to_the_currencys_step(quantity, per_thousand, currency,
                                                             expected):
    price = pricing.custom_price(quantity, per_thousand, currency)
    assert price == Money(expected, currency)
    assert type(price.amount) is int


def test_currencies_without_cash_cents_round_to_whole_units():
    assert (pricing.step("IDR"), pricing.step("VND"), pricing.step("USD"),
            pricing.step("BRL")) == (100, 1, 1, 1)
    assert pricing.round_minor(Decimal("149.99"), "IDR") == 100
    assert pricing.round_minor(Decimal("150"), "IDR") == 200


def test_a_price_too_large_for_the_amount_column_is_refused(ctx):
    with pytest.raises(pricing.PricingError, match="too large"):
        pricing.custom_price(10**9, 10**6, "USD")


@pytest.mark.parametrize("typed, message", [
    ("", "Type how many you want."),
    ("12a", "Type a whole number, with digits only."),
    ("-150", "Type a whole number, with digits only."),
    ("150.5", "Type a whole number, with digits only."),
    ("1e3", "Type a whole number, with digits only."),
    ("99", "Choose an amount from 100 to 20,000."),
    ("20001", "Choose an amount from 100 to 20,000."),
    ("99999999999999", "Type a whole number, with digits only."),
])
def test_quantities_out_of_shape_or_range_are_refused(ctx, typed, message):
    with pytest.raises(pricing.PricingError) as refused:
        pricing.parse_quantity(typed, 100, 20000)
    assert str(refused.value) == message


def test_quantities_in_range_are_read(ctx):
    assert pricing.parse_quantity(" 1,000 ", 100, 20000) == 1000
    assert pricing.parse_quantity("100", 100, 20000) == 100
    assert pricing.parse_quantity("20000", 100, 20000) == 20000


def percent(bp, **fields):
    return PromoCode(code="P", kind="percent", percent_bp=bp, **fields)


def fixed(amounts, **fields):
    return PromoCode(code="F", kind="fixed", fixed=amounts, **fields)


@pytest.mark.parametrize("promo, price, off", [
    (percent(1000), Money(938, "USD"), 94),  # 93.8 rounds half up
    (percent(1250), Money(4, "USD"), 1),  # 0.5 rounds half up
    (percent(3333), Money(1500000, "IDR"), 500000),  # Rp4,999.50 -> Rp5,000
    (percent(1000), Money(24000, "VND"), 2400),
    (percent(10000), Money(517, "BRL"), 517),  # 100%: all of it, no more
    (fixed({"USD": 50}), Money(938, "USD"), 50),
    (fixed({"USD": 5000}), Money(938, "USD"), 938),  # never more than the price
    (fixed({"USD": 50}), Money(517, "BRL"), 0),
])
def test_discounts(promo, price, off):
    assert pricing.discount(promo, price) == Money(off, price.currency)


class Fee:
    """A method charging 2.5% + 30 minor units."""
    def fee(self, price):
        return Money(int((Decimal(price.amount) * Decimal("0.025")).to_integral_value()) + 30,
                     price.currency)


def test_the_fee_is_charged_on_the_discounted_price():
    quote = pricing.quote(quantity=700, price=Money(938, "USD"), promo=fixed({"USD": 50}),
                          provider=Fee())
    assert (quote.discount, quote.subtotal) == (Money(50, "USD"), Money(888, "USD"))
    assert quote.fee == Money(22 + 30, "USD")  # 2.5% of 888, not of 938
    assert quote.total == Money(940, "USD")


def test_a_discount_never_makes_the_total_negative():
    quote = pricing.quote(quantity=70, price=Money(94, "USD"), promo=fixed({"USD": 10_000}))
    assert (quote.subtotal, quote.total) == (Money(0, "USD"), Money(0, "USD"))
    with_fee = pricing.quote(quantity=70, price=Money(94, "USD"), promo=percent(10000),
                             provider=Fee())
    assert with_fee.total == Money(30, "USD")  # the method's fixed part only


def check(promo, *, product=None, country="US", currency="USD", email=None, now=NOW):
    product = product or Product.get(Product.slug == "tiktok-coins")
    pricing.check_promo(promo, product=product, country=country, currency=currency,
                        email=email, now=now)


@pytest.mark.parametrize("fields, kwargs, message", [
    ({"valid_until": NOW}, {}, "This promo code has expired."),
    ({"valid_from": NOW + timedelta(seconds=1)}, {}, "This promo code is not valid yet."),
    ({"max_uses": 2, "uses": 2}, {}, "This promo code has been used up."),
    ({"country": "BR"}, {}, "This promo code is not valid in your country."),
    ({"currency": "BRL"}, {}, "This promo code can't be used to pay in USD."),
    ({"max_uses_per_email": 1}, {}, "Enter your e-mail address to use this promo code."),
    ({"enabled": False}, {}, "This promo code doesn't exist. Check the spelling."),
])
def test_promo_checks_say_why(ctx, fields, kwargs, message):
    promo = PromoCode.create(code="CHECK", kind="percent", percent_bp=1000, **fields)
    with pytest.raises(pricing.PricingError) as refused:
        check(promo, **kwargs)
    assert str(refused.value) == message


def test_promo_checks_for_product_currency_and_email(ctx):
    other = Product.create(slug="gems", name="Gems", delivery_backend="sandbox")
    only_gems = PromoCode.create(code="GEMS", kind="percent", percent_bp=1000, product=other)
    with pytest.raises(pricing.PricingError, match="not valid for this product"):
        check(only_gems)
    check(only_gems, product=other)
    usd_only = PromoCode.create(code="USD5", kind="fixed", fixed={"USD": 500})
    with pytest.raises(pricing.PricingError, match="can't be used to pay in BRL"):
        check(usd_only, country="BR", currency="BRL")
    once = PromoCode.create(code="ONCE", kind="percent", percent_bp=500, max_uses_per_email=1)
    check(once, email="a@example.com")
    fake = Order.create(public_id="x" * 22, idempotency_key="k" * 22, product=1, package=1,
                              quantity=70, account_id="a", country="US", currency="USD",
                              amount=1, payment_method="sandbox", status="awaiting_payment",
                              expires_at=NOW)
    PromoUse.create(promo=once, order=fake, email="a@example.com")
    with pytest.raises(pricing.PricingError, match="already used"):
        check(once, email="A@Example.com")
    check(once, email="b@example.com")


def test_codes_are_found_in_any_case(ctx):
    PromoCode.create(code="SUMMER-25", kind="percent", percent_bp=2500)
    assert pricing.find_promo("  summer-25 ").code == "SUMMER-25"
    for typed in ("nope", "sum mer", "x" * 40, "'; drop table"):
        with pytest.raises(pricing.PricingError, match="doesn't exist"):
            pricing.find_promo(typed)
