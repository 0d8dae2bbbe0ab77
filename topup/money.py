"""Money as integer minor units plus an ISO 4217 code. Never float.

Babel (CLDR) knows how many digits each currency has and how each locale
writes it; this module is the only place that converts between minor units and
the decimal amounts people read.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal

from babel import Locale, localedata
from babel.core import get_global
from babel.numbers import format_currency, get_currency_precision


def digits(currency: str) -> int:
    """Minor-unit digits of a currency (USD 2, VND 0, IDR 2)."""
    return get_currency_precision(currency)


def _cash_digits(currency: str) -> int:
    fractions = get_global("currency_fractions")
    entry = fractions.get(currency) or fractions["DEFAULT"]
    return entry[2]


@dataclass(frozen=True)  # no ordering: USD and IDR do not compare
class Money:
    amount: int  # minor units
    currency: str

    def __post_init__(self):
        if type(self.amount) is not int:  # bool and float are refused too
            raise TypeError(f"Money amount must be int minor units, got {self.amount!r}")

    @classmethod
    def from_decimal(cls, value: Decimal | str, currency: str) -> Money:
        """Exact conversion from a decimal major-unit amount; refuses sub-minor precision."""
        value = Decimal(value)
        if not value.is_finite():
            raise ValueError(f"{value} is not an amount of money")
        scaled = value.scaleb(digits(currency))
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{value} has more than {digits(currency)} decimals for {currency}")
        return cls(int(scaled), currency)

    def to_decimal(self) -> Decimal:
        return Decimal(self.amount).scaleb(-digits(self.currency))

    def format(self, locale: str = "en") -> str:
        """Locale-aware text. Whole amounts in currencies paid without cents
        (IDR, VND, ...) drop the zero fraction: "Rp15.000", not "Rp15.000,00"."""
        return _formatted(self.amount, self.currency, str(locale))

    def __str__(self) -> str:
        return self.format()


@functools.lru_cache(maxsize=4096)
def _formatted(amount: int, currency: str, locale: str) -> str:
    """Babel's formatting is slow and a catalog shows the same prices all day: cached."""
    value = Decimal(amount).scaleb(-digits(currency))
    if value == value.to_integral_value() and _cash_digits(currency) == 0:
        standard = Locale.parse(locale).currency_formats["standard"].pattern
        whole = re.sub(r"\.[0#]+", "", standard)
        return format_currency(value, currency, format=whole, locale=locale,
                               currency_digits=False)
    return format_currency(value, currency, locale=locale)


@functools.lru_cache(maxsize=1024)
def written_as(language: str, country: str | None) -> str:
    """The locale to write money and numbers in: the buyer's language as it
    is written in their country, where CLDR knows that pair (Spanish in Mexico,
    es_MX: "$17.00" and "17,500", where Spain's Spanish writes "17,00 MXN" and
    "17.500"; English in India, en_IN: lakh grouping), else the language itself.
    Words still come from the language's catalogue (gettext falls back from
    es_MX to es)."""
    language = str(language)
    if country:
        regional = f"{language.split('_')[0]}_{country.upper()}"
        if regional != language and localedata.exists(regional):
            return regional
    return language
