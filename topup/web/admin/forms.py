"""Reading what operators type: exact amounts, bounded integers, dates.

Each parser returns the value or raises FormError with a sentence for the
person who typed it; views collect them and answer 422 with the form again.
"""
from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from flask_babel import gettext as _

from topup.money import Money, digits

AMOUNT = re.compile(r"[0-9]+(\.[0-9]+)?")
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MAX_MINOR = 2**31 - 1  # the amount columns are 32-bit integers on Postgres


class FormError(ValueError):
    """A field the operator must correct; str() is the message for them."""


def amount(text: str, currency: str) -> int:
    """Decimal major units ("12.34") -> exact minor units (1234); never float."""
    text = (text or "").strip()
    if not text:
        raise FormError(_("Give an amount."))
    if text.startswith("-"):
        raise FormError(_("An amount cannot be negative."))
    if not AMOUNT.fullmatch(text):
        raise FormError(_("Write the amount with digits and at most one decimal point, "
                          "e.g. 12.34 (no thousands separators)."))
    try:
        minor = Money.from_decimal(Decimal(text), currency).amount
    except ValueError:
        raise FormError(_("%(currency)s has %(digits)d decimal(s): %(text)s has more.",
                          currency=currency, digits=digits(currency), text=text)) from None
    if minor <= 0:
        raise FormError(_("A price must be more than 0."))
    if minor > MAX_MINOR:
        raise FormError(_("%(text)s is too large.", text=text))
    return minor


def major(minor: int, currency: str) -> str:
    """Minor units as the decimal text the amount fields show (1234 USD -> "12.34")."""
    return str(Money(minor, currency).to_decimal())


def integer(text: str, low: int, high: int, what: str) -> int:
    text = (text or "").strip()
    if not re.fullmatch(r"-?[0-9]{1,10}", text) or not low <= int(text) <= high:
        raise FormError(_("%(what)s must be a whole number from %(low)d to %(high)d.",
                          what=what, low=low, high=high))
    return int(text)


def day(text: str | None, what: str) -> date | None:
    """A YYYY-MM-DD date (what <input type=date> sends); None when left empty."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        if not DATE.fullmatch(text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise FormError(_("%(what)s must be a date like 2025-01-31.", what=what)) from None


def text(value: str | None, limit: int) -> str:
    """Stripped and capped: what every free-text field gets."""
    return (value or "").strip()[:limit]
