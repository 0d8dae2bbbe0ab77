"""Money as integer minor units plus an ISO 4217 code. Never float.

How many minor units make a major one is ISO 4217's fixed exponent, kept here:
stored amounts and payment providers' APIs mean it, so it must not move when
locale data does (CLDR 48, in Babel 2.19, gives IDR 0 digits where ISO 4217 and
Stripe say 2: Rp 15.000 stays 1500000). Babel (CLDR) says how each locale
writes money and which currencies are paid without cents. This module is the
only place that converts between minor units and the decimal amounts people read.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal

from babel import Locale, localedata
from babel.core import get_global
from babel.numbers import format_currency


# ISO 4217 minor units of every active currency whose exponent is not 2.
ISO_4217_EXPONENTS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
                     "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}


def digits(currency: str) -> int:
    """Minor-unit digits of a currency, as ISO 4217 fixes them (USD 2, VND 0, IDR 2)."""
    return ISO_4217_EXPONENTS.get(currency, 2)


def _cash_digits(currency: str) -> int:
    """Digits cash is paid in, per CLDR (IDR 0: no sen); never more than digits()."""
    fractions = get_global("currency_fractions")
    entry = fractions.get(currency) or fractions["DEFAULT"]
    return min(entry[2], digits(currency))


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
    """Babel's formatting is slow and a catalog shows the same prices all day: cached.
    The locale's pattern is given this module's digits, not CLDR's, so every minor
    unit shows (Rp15.000,50 is not rounded to Rp15.001)."""
    places = digits(currency)
    value = Decimal(amount).scaleb(-places)
    if value == value.to_integral_value() and _cash_digits(currency) == 0:
        places = 0
    standard = Locale.parse(locale).currency_formats["standard"].pattern
    pattern = re.sub(r"\.[0#]+", "." + "0" * places if places else "", standard)
    return format_currency(value, currency, format=pattern, locale=locale, currency_digits=False)


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
