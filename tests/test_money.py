"""Money: integer minor units plus a currency code, formatted by CLDR."""
from __future__ import annotations

from decimal import Decimal

import pytest

from topup.money import Money, digits, written_as


@pytest.mark.parametrize("amount", [1.0, 0.5, 99.99, True, False, Decimal("1"), "100", None])
def test_money_refuses_anything_but_int_minor_units(amount):
    with pytest.raises(TypeError):
        Money(amount, "USD")


def test_money_is_an_immutable_value():
    money = Money(150, "USD")
    assert money == Money(150, "USD") and money != Money(150, "BRL")
    assert hash(money) == hash(Money(150, "USD"))
    with pytest.raises(AttributeError):
        money.amount = 1


@pytest.mark.parametrize("currency, expected", [
    ("USD", 2), ("IDR", 2), ("BRL", 2), ("PHP", 2), ("THB", 2), ("INR", 2), ("MXN", 2),
    ("VND", 0), ("JPY", 0), ("KWD", 3),
    # ISO 4217, not locale data: CLDR 48 gives these 0 digits
    ("HUF", 2), ("COP", 2), ("IQD", 3), ("LAK", 2),
])
def test_digits(currency, expected):
    assert digits(currency) == expected


@pytest.mark.parametrize("value, currency, amount", [
    ("0.94", "USD", 94),
    (Decimal("0.94"), "USD", 94),
    ("1.50", "USD", 150),
    ("1.500", "USD", 150),  # trailing zeros are not extra precision
    ("15000", "IDR", 1500000),
    ("15000.00", "IDR", 1500000),
    ("24000", "VND", 24000),
    ("5.17", "BRL", 517),
    ("1.234", "KWD", 1234),
    ("0", "USD", 0),
    ("-1.25", "USD", -125),
    ("1e3", "USD", 100000),
    ("123456789012.34", "USD", 12345678901234),  # no float on the way
])
def test_from_decimal_is_exact(value, currency, amount):
    assert Money.from_decimal(value, currency) == Money(amount, currency)


@pytest.mark.parametrize("value, currency", [
    ("0.015", "USD"), ("0.001", "USD"), ("24000.5", "VND"), ("1.2345", "KWD"),
    ("15000.001", "IDR"),
])
def test_from_decimal_refuses_sub_minor_precision(value, currency):
    with pytest.raises(ValueError, match="decimals"):
        Money.from_decimal(value, currency)


def test_from_decimal_refuses_a_float_that_is_not_exact():
    with pytest.raises(ValueError):
        Money.from_decimal(0.1, "USD")  # 0.1000000000000000055511151231257827...


@pytest.mark.parametrize("value", ["NaN", "sNaN", "Infinity", "-Infinity"])
def test_from_decimal_refuses_non_finite_amounts_with_value_error(value):
    # NaN is refused as "more decimals"; infinities should be refused the same way,
    # not escape as OverflowError from int().
    with pytest.raises(ValueError):
        Money.from_decimal(value, "USD")


@pytest.mark.parametrize("money, decimal", [
    (Money(94, "USD"), Decimal("0.94")),
    (Money(1500000, "IDR"), Decimal("15000.00")),
    (Money(24000, "VND"), Decimal("24000")),
    (Money(1234, "KWD"), Decimal("1.234")),
    (Money(-5, "USD"), Decimal("-0.05")),
])
def test_to_decimal(money, decimal):
    assert money.to_decimal() == decimal
    assert Money.from_decimal(money.to_decimal(), money.currency) == money


@pytest.mark.parametrize("money, locale, text", [
    (Money(1500000, "IDR"), "id_ID", "Rp15.000"),
    (Money(1500000, "IDR"), "en", "IDR15,000"),
    (Money(1500050, "IDR"), "id_ID", "Rp15.000,50"),  # not whole: cents stay
    (Money(99, "USD"), "en", "$0.99"),
    (Money(100, "USD"), "en", "$1.00"),
    (Money(123456789, "USD"), "en", "$1,234,567.89"),
    (Money(517, "BRL"), "pt_BR", "R$\xa05,17"),
    (Money(24000, "VND"), "en", "₫24,000"),
    (Money(24000, "VND"), "vi", "24.000\xa0₫"),
    (Money(5500, "PHP"), "en", "₱55.00"),
    (Money(1500, "KWD"), "en", "KWD1.500"),
    (Money(150, "HUF"), "en", "HUF1.50"),  # every ISO digit shows, whatever CLDR rounds to
    (Money(1500, "IQD"), "en", "IQD1.500"),
])
def test_format(money, locale, text):
    assert money.format(locale) == text


@pytest.mark.parametrize("language, country, locale", [
    ("es", "MX", "es_MX"),  # Spanish as Mexico writes it
    ("es", "ES", "es_ES"),
    ("en", "IN", "en_IN"),
    ("en", "ID", "en_ID"),
    ("pt_BR", "BR", "pt_BR"),
    ("pt_BR", "PT", "pt_PT"),  # the language, in the country's variant
    ("en", "VN", "en"),  # CLDR has no English-in-Vietnam: the language's own way
    ("th", None, "th"),  # no country known (the admin)
])
def test_written_as_is_the_language_in_the_buyers_country_when_cldr_knows_it(language, country,
                                                                             locale):
    assert written_as(language, country) == locale


@pytest.mark.parametrize("money, language, country, text", [
    (Money(1700, "MXN"), "es", "MX", "$17.00"),  # Spain's Spanish: "17,00 MXN"
    (Money(1700, "MXN"), "es", None, "17,00\xa0MXN"),
    (Money(10000000, "INR"), "en", "IN", "₹1,00,000.00"),  # lakh grouping
    (Money(1500000, "IDR"), "en", "ID", "Rp15.000"),
])
def test_money_is_written_as_the_buyers_country_writes_it(money, language, country, text):
    assert money.format(written_as(language, country)) == text


def test_vnd_has_no_decimals_anywhere():
    assert digits("VND") == 0
    for amount in (0, 1000, 24000, 5860000):
        assert "." not in Money(amount, "VND").format("en")
        assert "," not in Money(amount, "VND").format("vi")


def test_str_is_the_english_format():
    assert str(Money(99, "USD")) == "$0.99"
