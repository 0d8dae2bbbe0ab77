"""The promo codes page (create, edit limits and window, enable and disable,
usage counts) and the product page's custom amount settings: every form
CSRF'd, every mistake refused with a message and 422, changing nothing."""
from __future__ import annotations

from datetime import datetime

import pytest

from topup.models import CustomRate, Package, Product, PromoCode

from tests.conftest import place_order
from tests.web import visible
from tests.web.admin.conftest import post

NEW = {"code": "summer-25", "kind": "percent", "percent": "12.5", "product": "", "country": "",
       "currency": "", "valid_from": "", "valid_until": "", "max_uses": "",
       "max_uses_per_email": "", "enabled": "on"}


def create(client, **changes):
    return post(client, "/admin/promos", {**NEW, **changes})


def test_the_page_is_in_the_admin_nav(operator_client):
    html = operator_client.get("/admin/").get_data(as_text=True)
    assert 'href="/admin/promos"' in html and "Promo codes" in html
    assert operator_client.get("/admin/promos").status_code == 200


def test_create_a_percent_code(operator_client):
    response = create(operator_client, valid_from="2025-01-01", valid_until="2025-01-31",
                      max_uses="100", max_uses_per_email="1", country="BR")
    assert response.status_code == 303 and response.headers["Location"] == "/admin/promos"
    promo = PromoCode.get()
    assert (promo.code, promo.kind, promo.percent_bp, promo.fixed) == ("SUMMER-25", "percent",
                                                                       1250, None)
    assert (promo.valid_from, promo.valid_until) == (datetime(2025, 1, 1), datetime(2025, 2, 1))
    assert (promo.max_uses, promo.max_uses_per_email, promo.country, promo.enabled) == (
        100, 1, "BR", True)
    page = visible(operator_client.get("/admin/promos"))
    assert "Created the promo code SUMMER-25." in page
    assert "SUMMER-25 12.5%" in page and "2025-01-01 – 2025-01-31" in page


def test_create_a_fixed_code_in_exact_minor_units(operator_client):
    response = create(operator_client, code="rp", kind="fixed", percent="",
                      **{"fixed-IDR": "5000", "fixed-USD": "0.50", "fixed-VND": "10000"})
    assert response.status_code == 303
    promo = PromoCode.get(PromoCode.code == "RP")
    assert promo.fixed == {"IDR": 500000, "USD": 50, "VND": 10000} and promo.percent_bp is None


@pytest.mark.parametrize("changes, message", [
    ({"code": ""}, "A code has 1 to 32 letters, digits, _ or -."),
    ({"code": "two words"}, "A code has 1 to 32 letters, digits, _ or -."),
    ({"percent": "0"}, "A percent discount is more than 0 and at most 100"),
    ({"percent": "101"}, "A percent discount is more than 0 and at most 100"),
    ({"percent": "1.234"}, "A percent discount is more than 0 and at most 100"),
    ({"percent": "ten"}, "A percent discount is more than 0 and at most 100"),
    ({"kind": "free"}, "Choose a percent or a fixed discount."),
    ({"kind": "fixed"}, "A fixed discount needs an amount in at least one currency."),
    ({"kind": "fixed", "fixed-USD": "1.234"}, "USD: USD has 2 decimal(s): 1.234 has more."),
    ({"kind": "fixed", "fixed-USD": "-1"}, "USD: An amount cannot be negative."),
    ({"valid_from": "31/01/2025"}, "Valid from must be a date like 2025-01-31."),
    ({"valid_from": "2025-02-01", "valid_until": "2025-01-31"},
     "The last valid day cannot be before the first."),
    ({"max_uses": "0"}, "Uses in all must be a whole number from 1 to 1000000000."),
    ({"max_uses_per_email": "x"}, "Uses per e-mail must be a whole number from 1 to 1000000000."),
    ({"country": "ZZ"}, "Choose a country from the list."),
    ({"currency": "XXX"}, "Choose a currency from the list."),
    ({"product": "99999999999"}, "Choose a product from the list."),
])
def test_mistakes_are_refused_and_change_nothing(operator_client, changes, message):
    response = create(operator_client, **changes)
    assert response.status_code == 422
    assert message in visible(response)
    assert PromoCode.select().count() == 0


def test_a_code_exists_once_whatever_its_case(operator_client):
    assert create(operator_client).status_code == 303
    again = create(operator_client, code="SUMMER-25")
    assert again.status_code == 422
    assert "The code SUMMER-25 exists already" in visible(again)
    assert PromoCode.select().count() == 1


def test_edit_limits_and_window_keeps_the_code_and_its_uses(operator_client):
    create(operator_client)
    promo = PromoCode.get()
    PromoCode.update(uses=4).execute()
    form = operator_client.get(f"/admin/promos?edit={promo.id}").get_data(as_text=True)
    assert 'name="id" value="%d"' % promo.id in form and 'value="12.5"' in form
    response = post(operator_client, "/admin/promos/edit",
                    {**NEW, "id": str(promo.id), "code": "OTHER", "max_uses": "5",
                     "valid_until": "2030-12-31", "percent": "20"})
    assert response.status_code == 303
    promo = PromoCode.get_by_id(promo.id)
    assert (promo.code, promo.uses, promo.max_uses, promo.percent_bp) == ("SUMMER-25", 4, 5, 2000)
    assert promo.valid_until == datetime(2031, 1, 1)
    assert "4 / 5" in visible(operator_client.get("/admin/promos"))
    bad = post(operator_client, "/admin/promos/edit", {**NEW, "id": str(promo.id), "max_uses": "-1"})
    assert bad.status_code == 422 and PromoCode.get_by_id(promo.id).max_uses == 5


def test_unknown_codes_are_404(operator_client):
    assert operator_client.get("/admin/promos?edit=12345").status_code == 404
    assert operator_client.get("/admin/promos?edit=abc").status_code == 404
    assert post(operator_client, "/admin/promos/enabled", {"id": "99999999999"}).status_code == 404


def test_disable_and_enable(app, operator_client, buyer):
    create(operator_client)
    promo = PromoCode.get()
    assert post(operator_client, "/admin/promos/enabled",
                {"id": str(promo.id), "enabled": "0"}).status_code == 303
    assert PromoCode.get_by_id(promo.id).enabled is False
    assert "Disabled SUMMER-25." in visible(operator_client.get("/admin/promos"))
    from tests.conftest import buy
    refused = buy(buyer, promo="summer-25")
    assert refused.status_code == 422 and "doesn't exist" in visible(refused)
    post(operator_client, "/admin/promos/enabled", {"id": str(promo.id), "enabled": "1"})
    assert PromoCode.get_by_id(promo.id).enabled is True
    assert place_order(buyer, promo="summer-25").promo_code == "SUMMER-25"


def test_usage_counts_are_shown(app, operator_client, buyer):
    create(operator_client, max_uses="10")
    place_order(buyer, promo="summer-25", email="a@example.com")
    place_order(buyer, promo="summer-25", email="a@example.com")
    place_order(buyer, promo="summer-25", email="b@example.com")
    page = visible(operator_client.get("/admin/promos"))
    assert "3 / 10 (2 e-mail(s))" in page


def test_forms_need_their_csrf_token(operator_client):
    assert operator_client.post("/admin/promos", data=NEW).status_code == 400
    assert operator_client.post("/admin/promos/enabled", data={"id": "1"}).status_code == 400
    assert operator_client.post("/admin/catalog/1/custom", data={}).status_code == 400
    assert PromoCode.select().count() == 0


# --- custom amounts on the product page ----------------------------------------------


CUSTOM = {"custom_enabled": "on", "custom_min": "100", "custom_max": "20000",
          "rate-USD": "13.40", "rate-IDR": "214286", "rate-VND": "334000"}


def test_custom_amount_settings_are_saved_exactly(operator_client, client):
    response = post(operator_client, "/admin/catalog/1/custom", CUSTOM)
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/catalog/1#custom"
    product = Product.get_by_id(1)
    assert (product.custom_enabled, product.custom_min, product.custom_max) == (True, 100, 20000)
    rates = {r.currency: r.per_thousand for r in CustomRate.select()}
    assert rates == {"USD": 1340, "IDR": 21428600, "VND": 334000}
    hidden = Package.get(Package.product == product, Package.quantity == Package.CUSTOM)
    assert hidden.enabled is False and hidden.prices.count() == 0
    page = operator_client.get("/admin/catalog/1").get_data(as_text=True)
    assert 'name="rate-USD" inputmode="decimal" autocomplete="off"\n             value="13.40"' in page
    assert f'id="package-{hidden.id}"' not in page  # the hidden package is not listed
    assert 'value="custom"' in client.get("/tiktok-coins?country=US").get_data(as_text=True)
    # an emptied rate stops selling custom amounts in that currency; the rest stay
    post(operator_client, "/admin/catalog/1/custom", {**CUSTOM, "rate-VND": ""})
    assert {r.currency for r in CustomRate.select()} == {"USD", "IDR"}
    assert Package.select().where(Package.quantity == Package.CUSTOM).count() == 1
    unticked = {key: value for key, value in CUSTOM.items() if key != "custom_enabled"}
    assert post(operator_client, "/admin/catalog/1/custom", unticked).status_code == 303
    assert Product.get_by_id(1).custom_enabled is False
    assert 'value="custom"' not in client.get("/tiktok-coins?country=US").get_data(as_text=True)


@pytest.mark.parametrize("changes, message", [
    ({"custom_min": "0"}, "Smallest amount must be a whole number from 1 to 1000000000."),
    ({"custom_max": "lots"}, "Largest amount must be a whole number from 1 to 1000000000."),
    ({"custom_min": "500", "custom_max": "100"},
     "The smallest amount cannot be more than the largest."),
    ({"rate-USD": "13.405"}, "USD: USD has 2 decimal(s): 13.405 has more."),
    ({"rate-USD": "0"}, "USD: A price must be more than 0."),
    ({"rate-USD": "", "rate-IDR": "", "rate-VND": ""},
     "Give the price of 1,000 in at least one currency to sell custom amounts."),
])
def test_custom_amount_mistakes_are_refused(operator_client, changes, message):
    response = post(operator_client, "/admin/catalog/1/custom", {**CUSTOM, **changes})
    assert response.status_code == 422
    assert message in visible(response)
    assert CustomRate.select().count() == 0 and Product.get_by_id(1).custom_enabled is False
