"""The catalog pages: prices typed in major units become exact minor units,
bad amounts are refused with a message (and change nothing); products and
packages are edited and added; payment methods and fees are shown read-only."""
from __future__ import annotations

import re

import pytest

from topup.models import Package, Price, Product
from topup.money import digits

from tests.web.admin.conftest import post


@pytest.fixture
def config(config):
    config["PLUGINS"] = {"sandbox_payment": {**config["PLUGINS"]["sandbox_payment"],
                                             "fee_percent": "1.5", "fee_fixed": {"BRL": 50}}}
    return config


def package(quantity: int = 70) -> Package:
    return Package.get(Package.quantity == quantity)


def price(currency: str, quantity: int = 70) -> int | None:
    found = Price.get_or_none(Price.package == package(quantity), Price.currency == currency)
    return found.amount if found else None


def prices_form(quantity: int = 70, **changes) -> dict:
    """The package form as the page fills it, with `changes` typed in."""
    pack = package(quantity)
    form = {"quantity": str(pack.quantity), "sort": str(pack.sort), "enabled": "on"}
    for row in Price.select().where(Price.package == pack):
        form[f"price-{row.currency}"] = str(row.money.to_decimal())
    form.update({f"price-{currency}": value for currency, value in changes.items()})
    return form


def save_package(client, quantity: int = 70, **changes):
    return post(client, f"/admin/catalog/packages/{package(quantity).id}",
                prices_form(quantity, **changes))


def test_prices_convert_exactly(operator_client):
    assert digits("IDR") == 2  # ISO 4217: so 15000 rupiah are 1500000 minor units
    response = save_package(operator_client, USD="12.34", IDR="15000", VND="24500", EUR="0.9")
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/catalog/1#package-2"
    assert (price("USD"), price("IDR"), price("VND"), price("EUR")) == (1234, 1500000, 24500, 90)
    page = operator_client.get("/admin/catalog/1").get_data(as_text=True)
    assert re.search(r'name="price-USD"[^>]*value="12.34"', page)
    assert "Saved the package of 70." in page


@pytest.mark.parametrize("typed, message", [
    ("1.234", "USD has 2 decimal(s): 1.234 has more."),
    ("-1", "An amount cannot be negative."),
    ("abc", "Write the amount with digits and at most one decimal point"),
    ("1,000", "Write the amount with digits"),
    ("1e3", "Write the amount with digits"),
    ("NaN", "Write the amount with digits"),
    ("0", "A price must be more than 0."),
    ("99999999999", "99999999999 is too large."),
])
def test_bad_amounts_are_refused_and_change_nothing(operator_client, typed, message):
    before = (price("USD"), price("IDR"), package().quantity)
    response = save_package(operator_client, USD=typed, IDR="1")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f"USD: {message}" in page
    assert f'value="{typed}"' in page  # what was typed comes back to be corrected
    assert (price("USD"), price("IDR"), package().quantity) == before


def test_a_currency_without_decimals_refuses_them(operator_client):
    response = save_package(operator_client, VND="24000.5")
    assert response.status_code == 422
    assert "VND has 0 decimal(s): 24000.5 has more." in response.get_data(as_text=True)


def test_emptying_a_price_stops_selling_in_that_currency(operator_client):
    assert save_package(operator_client, THB="").status_code == 303
    assert price("THB") is None and price("USD") == 94
    pack = package()
    assert not Package.priced_in(pack.product, "THB").where(Package.id == pack.id).exists()


def test_package_fields(operator_client):
    form = prices_form(quantity=70)
    form.update(quantity="75", sort="-3")
    del form["enabled"]
    path = f"/admin/catalog/packages/{package(70).id}"
    assert post(operator_client, path, form).status_code == 303
    changed = package(75)
    assert (changed.sort, changed.enabled) == (-3, False)
    form["quantity"] = "0"
    response = post(operator_client, f"/admin/catalog/packages/{changed.id}", form)
    assert response.status_code == 422
    assert "Quantity must be a whole number from 1 to" in response.get_data(as_text=True)


def test_add_a_package_and_its_prices(operator_client):
    product = Product.get(Product.slug == "tiktok-coins")
    response = post(operator_client, f"/admin/catalog/{product.id}/packages",
                    {"quantity": "1000", "sort": "20", "enabled": "on"})
    assert response.status_code == 303
    new = package(1000)
    assert (new.sort, new.enabled, new.prices.count()) == (20, True, 0)
    path = f"/admin/catalog/packages/{new.id}/prices"
    assert post(operator_client, path, {"currency": "IDR", "amount": "200000"}).status_code == 303
    assert post(operator_client, path, {"currency": "USD", "amount": "12.5"}).status_code == 303
    assert (price("IDR", 1000), price("USD", 1000)) == (20000000, 1250)

    twice = post(operator_client, path, {"currency": "USD", "amount": "13"})
    assert twice.status_code == 422
    assert "This package has a price in USD already" in twice.get_data(as_text=True)
    for data, message in [({"currency": "XXX", "amount": "1"}, "Choose a currency from the list."),
                          ({"currency": "USD'", "amount": "1"}, "Choose a currency from the list."),
                          ({"currency": "EUR", "amount": "1.001"}, "EUR has 2 decimal(s)"),
                          ({"currency": "EUR", "amount": ""}, "Give an amount.")]:
        response = post(operator_client, path, data)
        assert response.status_code == 422 and message in response.get_data(as_text=True), data
    assert price("USD", 1000) == 1250 and price("EUR", 1000) is None
    refused = post(operator_client, f"/admin/catalog/{product.id}/packages",
                   {"quantity": "lots", "sort": "1"})
    assert refused.status_code == 422
    assert Package.select().where(Package.product == product).count() == 9


def test_edit_the_product(operator_client):
    product = Product.get(Product.slug == "tiktok-coins")
    path = f"/admin/catalog/{product.id}"
    page = operator_client.get(path).get_data(as_text=True)
    assert '<option value="manual">manual</option>' in page  # registry.backends
    response = post(operator_client, path, {"name": "TikTok Coins (fast)", "sort": "2",
                                             "delivery_backend": "manual"})
    assert response.status_code == 303
    product = Product.get_by_id(product.id)
    assert (product.name, product.sort, product.delivery_backend, product.enabled) == (
        "TikTok Coins (fast)", 2, "manual", False)
    for data, message in [({"name": "", "sort": "0", "delivery_backend": "manual"},
                           "A name has 1 to 100 characters."),
                          ({"name": "X", "sort": "0", "delivery_backend": "nowhere"},
                           "Choose a delivery backend from the list."),
                          ({"name": "X", "sort": "1.5", "delivery_backend": "manual"},
                           "Sort must be a whole number")]:
        response = post(operator_client, path, data)
        assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert Product.get_by_id(product.id).name == "TikTok Coins (fast)"


def test_payment_methods_and_their_fees_are_shown(operator_client):
    page = operator_client.get("/admin/catalog").get_data(as_text=True)
    assert "Read only." in page and "settings in the config file" in page
    brazil = page[page.index("Brazil"):page.index("</tr>", page.index("Brazil"))]
    assert "Sandbox (test payment)" in brazil and "1.5% + R$0.50" in brazil
    us = page[page.index("United States"):page.index("</tr>", page.index("United States"))]
    assert "1.5%" in us and "+" not in us
    assert "pix" in page  # not configured, said so
