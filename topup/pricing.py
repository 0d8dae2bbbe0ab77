"""The pricing rules, in one place: a custom amount's price, a promo code's
discount, and the quote a buyer sees before Buy (and create_order charges).

Everything is integer minor units (topup.money); Decimal only in between,
never float. Rounding is half up to the currency's step: one minor unit, or a
whole major unit for currencies paid without cents (IDR, VND: CLDR "cash
digits" 0), as the shop's fixed prices are written.

The order of the total: price (package, or quantity x rate) - discount
(never more than the price) = subtotal; the payment method's fee is computed
on the subtotal (the discounted price) and added: total = subtotal + fee.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from flask_babel import gettext as _

from topup.money import Money, _cash_digits, digits

MAX_MINOR = 2**31 - 1  # amount columns are 32-bit integers on Postgres
QUANTITY = re.compile(r"[0-9]{1,10}")
PROMO = re.compile(r"[A-Z0-9_-]{1,32}")


class PricingError(ValueError):
    """The buyer's choice cannot be priced; str() is the message for them."""


def step(currency: str) -> int:
    """The smallest amount prices are written in, in minor units: 1, or one
    whole major unit (100 for IDR) where cash has no cents."""
    return 10 ** digits(currency) if _cash_digits(currency) == 0 else 1


def round_minor(value: Decimal, currency: str) -> int:
    """A Decimal amount in minor units, rounded half up to the currency's step."""
    unit = step(currency)
    return int((Decimal(value) / unit).to_integral_value(ROUND_HALF_UP)) * unit


# --- custom amounts -------------------------------------------------------------


def parse_quantity(text: str | None, low: int, high: int) -> int:
    """What the buyer typed in the custom amount field, as a whole number in range."""
    text = (text or "").strip().replace(",", "").replace(" ", "")
    if not text:
        raise PricingError(_("Type how many you want."))
    if not QUANTITY.fullmatch(text):
        raise PricingError(_("Type a whole number, with digits only."))
    quantity = int(text)
    if not low <= quantity <= high:
        raise PricingError(_("Choose an amount from %(low)s to %(high)s.",
                             low=f"{low:,}", high=f"{high:,}"))
    return quantity


def custom_price(quantity: int, per_thousand: int, currency: str) -> Money:
    """quantity x (per_thousand / 1000) minor units, rounded half up to the
    currency's step; never less than one step (nothing is sold for free)."""
    if quantity <= 0 or per_thousand <= 0:
        raise ValueError("quantity and rate must be positive")
    amount = max(round_minor(Decimal(quantity) * per_thousand / 1000, currency), step(currency))
    if amount > MAX_MINOR:
        raise PricingError(_("This amount is too large to buy at once. Please choose less."))
    return Money(amount, currency)


def custom_offer(product, currency: str):
    """(min, max, per_thousand) when product sells custom amounts in currency, else None."""
    from topup.models import CustomRate

    if not (product.custom_enabled and product.custom_min and product.custom_max):
        return None
    rate = CustomRate.get_or_none(CustomRate.product == product.id, CustomRate.currency == currency)
    if rate is None:
        return None
    return product.custom_min, product.custom_max, rate.per_thousand


# --- promo codes ------------------------------------------------------------------


def normalise_code(text: str | None) -> str:
    return (text or "").strip().upper()


def find_promo(text: str | None):
    """The PromoCode the buyer typed (any case), or raise PricingError."""
    from topup.models import PromoCode

    code = normalise_code(text)
    promo = PromoCode.get_or_none(PromoCode.code == code) if PROMO.fullmatch(code) else None
    if promo is None or not promo.enabled:
        raise PricingError(_("This promo code doesn't exist. Check the spelling."))
    return promo


def check_promo(promo, *, product, country: str, currency: str, email: str | None,
                now: datetime) -> None:
    """Raise PricingError, for the buyer, when promo cannot be used on this order.
    Usage limits are only read here; create_order counts them atomically."""
    if not promo.enabled:
        raise PricingError(_("This promo code doesn't exist. Check the spelling."))
    if promo.valid_from is not None and now < promo.valid_from:
        raise PricingError(_("This promo code is not valid yet."))
    if promo.valid_until is not None and now >= promo.valid_until:
        raise PricingError(_("This promo code has expired."))
    if promo.max_uses is not None and promo.uses >= promo.max_uses:
        raise PricingError(_("This promo code has been used up."))
    if promo.product_id is not None and promo.product_id != product.id:
        raise PricingError(_("This promo code is not valid for this product."))
    if promo.country and promo.country != country:
        raise PricingError(_("This promo code is not valid in your country."))
    if (promo.currency and promo.currency != currency) or (
            promo.kind == "fixed" and currency not in (promo.fixed or {})):
        raise PricingError(_("This promo code can't be used to pay in %(currency)s.",
                             currency=currency))
    if promo.max_uses_per_email is not None:
        if not email:
            raise PricingError(_("Enter your e-mail address to use this promo code."))
        if uses_by(promo, email) >= promo.max_uses_per_email:
            raise PricingError(_("You have already used this promo code."))


def uses_by(promo, email: str) -> int:
    from topup.models import PromoUse

    return PromoUse.select().where(PromoUse.promo == promo.id,
                                   PromoUse.email == email.lower()).count()


def discount(promo, price: Money) -> Money:
    """What promo takes off price: percent (basis points) rounded half up to
    the currency's step, or the fixed amount; never more than the price."""
    if promo.kind == "percent":
        off = round_minor(Decimal(price.amount) * (promo.percent_bp or 0) / 10000, price.currency)
    else:
        off = int((promo.fixed or {}).get(price.currency, 0))
    return Money(max(0, min(off, price.amount)), price.currency)


# --- the quote ----------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    quantity: int
    price: Money
    discount: Money
    fee: Money
    promo: object = None  # the PromoCode applied, if any

    @property
    def subtotal(self) -> Money:
        return Money(self.price.amount - self.discount.amount, self.price.currency)

    @property
    def total(self) -> Money:
        return Money(self.subtotal.amount + self.fee.amount, self.price.currency)


def quote(*, quantity: int, price: Money, promo=None, provider=None) -> Quote:
    """The full price of a choice: the promo's discount, then the method's fee
    on the discounted price."""
    off = discount(promo, price) if promo is not None else Money(0, price.currency)
    subtotal = Money(price.amount - off.amount, price.currency)
    fee = provider.fee(subtotal) if provider is not None else Money(0, price.currency)
    return Quote(quantity=quantity, price=price, discount=off, fee=fee, promo=promo)
