"""Custom amounts and promo codes on the product page, with and without htmx:
the total shown before Buy, the order the server prices, each refusal, and a
race of more buyers than a code has uses."""
from __future__ import annotations

import secrets
import threading
from decimal import Decimal

import pytest

from topup import orders
from topup.models import CustomRate, Order, Package, Product, PromoCode, PromoUse, utcnow

from tests.conftest import buy, form_tokens, package_id, pay, place_order
from tests.web import HX, body, is_full_page, visible


@pytest.fixture
def custom(app):
    """The demo product sells 100 to 20,000 coins at $13.40 / Rp214,286 per 1,000."""
    product = Product.get(Product.slug == "tiktok-coins")
    Product.update(custom_enabled=True, custom_min=100, custom_max=20000).where(
        Product.id == product.id).execute()
    CustomRate.create(product=product, currency="USD", per_thousand=1340)
    CustomRate.create(product=product, currency="IDR", per_thousand=21428600)
    return Package.custom_for(product)


def refresh(client, **fields):
    """The no-JS Apply / Show prices button: the whole page again, with the total."""
    tokens = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))
    data = {**tokens, "country": "US", "account": "", "method": "sandbox", "email": "",
            "intent": "refresh", **fields}
    return client.post("/tiktok-coins", data=data)


def total(client, **query):
    return client.get("/tiktok-coins/total", query_string={"country": "US", **query}, headers=HX)


# --- custom amounts ------------------------------------------------------------------


def test_the_page_offers_a_custom_amount_only_when_it_is_sold(client, custom):
    html = body(client.get("/tiktok-coins?country=US"))
    assert 'value="custom"' in html and "Custom amount" in html
    assert 'name="quantity"' in html and 'min="100"' in html and 'max="20000"' in html
    assert "How many coins (100 to 20,000)" in html
    brl = body(client.get("/tiktok-coins?country=BR"))  # no BRL rate
    assert 'value="custom"' not in brl


def test_no_custom_amount_without_the_setting(client):
    assert 'value="custom"' not in body(client.get("/tiktok-coins?country=US"))


def test_without_javascript_refresh_shows_the_custom_price(client, custom):
    response = refresh(client, package="custom", quantity="1234")
    assert response.status_code == 200
    text = visible(response)
    assert "1,234 coins: $16.54" in text and "Total $16.54" in text


def test_htmx_shows_the_custom_price_live_in_a_partial(client, custom):
    response = total(client, package="custom", quantity="125", method="sandbox")
    assert response.status_code == 200 and not is_full_page(response.get_data(as_text=True))
    assert "Total $1.68" in visible(response)  # 167.5 cents, half up
    idr = total(client, country="ID", package="custom", quantity="175")
    assert "Total Rp37.500" in visible(idr)  # Rp37,500.05: whole rupiah, written as in Indonesia
    wrong = total(client, package="custom", quantity="99")
    assert "Choose an amount from 100 to 20,000." in visible(wrong) and "Total" not in visible(wrong)


def test_the_total_partial_without_htmx_is_the_full_page(client, custom):
    response = client.get("/tiktok-coins/total?country=US&package=custom&quantity=500")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/tiktok-coins?")
    assert "quantity=500" in response.headers["Location"]


def test_a_custom_amount_order_has_the_typed_quantity_and_the_servers_price(client, custom):
    order = place_order(client, coins=None, package="custom", quantity="1234", amount="1")
    assert (order.quantity, order.amount, order.package_id) == (1234, 1654, custom.id)
    assert order.latest_payment().amount == 1654
    idr = place_order(client, coins=None, country="ID", package="custom", quantity="175")
    assert (idr.quantity, idr.amount, idr.currency) == (175, 3750000, "IDR")
    assert "1,234" in visible(client.get(f"/orders/{order.public_id}"))


@pytest.mark.parametrize("fields, message", [
    ({"quantity": ""}, "Type how many you want."),
    ({"quantity": "12a"}, "Type a whole number, with digits only."),
    ({"quantity": "-5"}, "Type a whole number, with digits only."),
    ({"quantity": "99"}, "Choose an amount from 100 to 20,000."),
    ({"quantity": "20001"}, "Choose an amount from 100 to 20,000."),
    ({"quantity": "500", "country": "BR"},
     "Custom amounts are not sold in that currency. Please choose a package."),
])
def test_bad_custom_amounts_are_refused_with_a_message(client, custom, fields, message):
    before = Order.select().count()
    response = buy(client, coins=None, package="custom", **fields)
    assert response.status_code == 422
    assert message in body(response)
    assert Order.select().count() == before


def test_a_disabled_custom_amount_is_refused_at_buy(client, custom):
    tokens = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))
    Product.update(custom_enabled=False).execute()
    response = buy(client, coins=None, package="custom", quantity="500", tokens=tokens)
    assert response.status_code == 422
    assert "Custom amounts are not sold in that currency." in body(response)


def test_the_hidden_custom_package_cannot_be_bought_as_a_package(client, custom):
    response = buy(client, coins=None, package=str(custom.id))
    assert response.status_code == 422 and "Choose a package." in body(response)


# --- promo codes ---------------------------------------------------------------------


@pytest.fixture
def fifty(app):
    return PromoCode.create(code="FIFTY", kind="fixed", fixed={"USD": 50, "BRL": 100})


def test_without_javascript_apply_shows_the_discount_in_the_total(client, fifty):
    response = refresh(client, package=str(package_id(700)), promo="fifty")
    assert response.status_code == 200
    text = visible(response)
    assert "Promo code FIFTY applied." in text
    assert "Discount -$0.50 Total $8.88" in text


def test_htmx_apply_shows_the_discount_in_the_total(client, fifty):
    response = total(client, package=str(package_id(700)), promo="Fifty", method="sandbox")
    assert not is_full_page(response.get_data(as_text=True))
    assert "Discount -$0.50 Total $8.88" in visible(response)


def test_a_promo_order_records_its_discount_and_counts_the_use(client, fifty):
    order = place_order(client, coins=700, promo=" fifty ")
    assert (order.discount, order.amount, order.promo_code) == (50, 888, "FIFTY")
    assert order.latest_payment().amount == 888
    assert PromoCode.get_by_id(fifty.id).uses == 1
    assert PromoUse.get(PromoUse.order == order.id).promo_id == fifty.id


def test_the_fee_is_charged_on_the_discounted_price(app, client, monkeypatch):
    sandbox = app.extensions["topup"].providers["sandbox"]
    monkeypatch.setattr(sandbox, "fee_percent", Decimal("10"))
    PromoCode.create(code="HALF", kind="percent", percent_bp=5000)
    shown = visible(total(client, package=str(package_id(700)), promo="half", method="sandbox"))
    assert "Discount -$4.69 Payment fee $0.47 Total $5.16" in shown
    order = place_order(client, coins=700, promo="HALF")
    assert (order.discount, order.fee, order.amount) == (469, 47, 469 + 47)


def test_a_discount_larger_than_the_price_makes_it_free_not_negative(client):
    PromoCode.create(code="ALL", kind="fixed", fixed={"USD": 100000})
    order = place_order(client, coins=70, promo="all")
    assert (order.discount, order.amount) == (94, 0)


def test_a_custom_amount_takes_a_promo_too(client, custom):
    PromoCode.create(code="TEN", kind="percent", percent_bp=1000)
    order = place_order(client, coins=None, package="custom", quantity="1234", promo="ten")
    assert (order.quantity, order.discount, order.amount) == (1234, 165, 1654 - 165)


@pytest.mark.parametrize("fields, buy_with, message", [
    ({"valid_until": "past"}, {}, "This promo code has expired."),
    ({"valid_from": "future"}, {}, "This promo code is not valid yet."),
    ({"max_uses": 1, "uses": 1}, {}, "This promo code has been used up."),
    ({"country": "BR"}, {}, "This promo code is not valid in your country."),
    ({"currency": "BRL"}, {}, "This promo code can't be used to pay in USD."),
    ({"product": "other"}, {}, "This promo code is not valid for this product."),
    ({"max_uses_per_email": 1}, {}, "Enter your e-mail address to use this promo code."),
    ({"enabled": False}, {}, "This promo code doesn't exist. Check the spelling."),
    ({}, {"promo": "NOPE"}, "This promo code doesn't exist. Check the spelling."),
])
def test_each_refusal_says_why_at_buy_and_in_the_total(client, fields, buy_with, message):
    when = {"past": utcnow(), "future": utcnow().replace(year=utcnow().year + 1)}
    fields = {key: when.get(value, value) if isinstance(value, str) else value
              for key, value in fields.items()}
    if fields.get("product") == "other":
        fields["product"] = Product.create(slug="gems", name="Gems", delivery_backend="sandbox")
    PromoCode.create(code="CODE", kind="percent", percent_bp=1000, **fields)
    promo = buy_with.get("promo", "code")
    response = buy(client, coins=700, promo=promo)
    assert response.status_code == 422
    assert message in body(response)
    assert Order.select().count() == 0 and PromoUse.select().count() == 0
    shown = visible(total(client, package=str(package_id(700)), promo=promo))
    assert message in shown and "Discount" not in shown and "Total $9.38" in shown


def test_a_fixed_code_without_the_buyers_currency_is_refused(client, fifty):
    response = buy(client, coins=700, country="PH", promo="fifty")
    assert response.status_code == 422
    assert "This promo code can't be used to pay in PHP." in body(response)


def test_a_per_email_limit_needs_an_email_and_counts_per_address(client):
    PromoCode.create(code="WELCOME", kind="percent", percent_bp=1000, max_uses_per_email=1)
    assert buy(client, promo="welcome").status_code == 422
    first = place_order(client, promo="welcome", email="Maria@Example.com")
    assert first.discount == 9  # 10% of 94 cents, half up
    again = buy(client, promo="welcome", email="maria@example.com")
    assert again.status_code == 422
    assert "You have already used this promo code." in body(again)
    assert place_order(client, promo="welcome", email="joao@example.com").discount == 9


def test_a_double_tap_uses_the_code_once(client, fifty):
    tokens = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))
    one = buy(client, coins=700, promo="fifty", tokens=tokens)
    two = buy(client, coins=700, promo="fifty", tokens=tokens)
    assert one.status_code == two.status_code == 303
    assert one.headers["Location"] == two.headers["Location"]
    assert PromoCode.get_by_id(fifty.id).uses == 1 and PromoUse.select().count() == 1


def test_the_landing_page_cache_ignores_the_new_fields(app, client, fifty, custom):
    app.config["PAGE_CACHE_SECONDS"] = 60
    first = body(client.get("/tiktok-coins"))
    assert "Discount" not in first
    with_promo = visible(client.get(f"/tiktok-coins?package={package_id(700)}&promo=fifty"))
    assert "Discount -$0.50" in with_promo
    assert "Discount" not in body(client.get("/tiktok-coins"))


def test_more_buyers_than_uses_at_once_never_go_over_the_limit(app):
    """Twelve threads place orders with a code that has 3 uses left: the
    conditional UPDATE lets exactly 3 through, the others are refused."""
    promo = PromoCode.create(code="RACE", kind="percent", percent_bp=1000, max_uses=3)
    product = Product.get(Product.slug == "tiktok-coins")
    package = Package.get(Package.quantity == 70)
    start, results = threading.Barrier(12), []

    def attempt():
        with app.test_request_context():
            start.wait()
            try:
                order, _ = orders.create_order(
                    product=product, package=package, country="US", currency="USD",
                    account_id="demo_user", account_nickname=None, payment_method="sandbox",
                    email=None, locale="en", idempotency_key=secrets.token_urlsafe(18),
                    promo_code="race")
                results.append(order.discount)
            except orders.OrderRefused as refused:
                results.append(str(refused))

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results, key=str) == [9, 9, 9] + ["This promo code has been used up."] * 9
    assert PromoCode.get_by_id(promo.id).uses == 3
    assert PromoUse.select().count() == 3
    assert Order.select().where(Order.promo_code == "RACE").count() == 3


@pytest.fixture
def one_use(app):
    return PromoCode.create(code="ONCE", kind="fixed", fixed={"USD": 50}, max_uses=1)


def _overdue(order):
    Order.update(expires_at=utcnow()).where(Order.id == order.id).execute()


def test_an_order_never_paid_gives_its_use_back(app, client, one_use):
    first = place_order(client, coins=700, promo="once")
    assert buy(client, coins=700, promo="once").status_code == 422  # used up
    _overdue(first)
    with app.app_context():
        assert orders.expire_overdue() == 1
    assert PromoCode.get_by_id(one_use.id).uses == 0
    assert PromoUse.select().count() == 0
    second = place_order(client, coins=700, promo="once")
    assert second.discount == 50 and PromoCode.get_by_id(one_use.id).uses == 1


def test_a_canceled_unpaid_order_gives_its_use_back_and_a_paid_one_keeps_it(app, client, one_use):
    paid = place_order(client, coins=700, promo="once")
    pay(app, paid)
    with app.app_context(), pytest.raises(orders.OrderRefused):
        orders.cancel(Order.get_by_id(paid.id), "buyer asked", actor="operator@example.com")
    assert PromoCode.get_by_id(one_use.id).uses == 1

    one_use.uses = 0
    one_use.save()
    PromoUse.delete().execute()
    unpaid = place_order(client, coins=700, promo="once")
    with app.app_context():
        orders.cancel(Order.get_by_id(unpaid.id), "buyer asked", actor="operator@example.com")
    assert Order.get_by_id(unpaid.id).status == orders.CANCELED
    assert PromoCode.get_by_id(one_use.id).uses == 0


def test_money_after_expiry_counts_the_use_again_even_over_the_limit(app, client, one_use):
    late = place_order(client, coins=700, promo="once")
    _overdue(late)
    with app.app_context():
        orders.expire_overdue()
    other = place_order(client, coins=700, promo="once")  # the use given back, taken again
    assert pay(app, late) == "applied"
    assert Order.get_by_id(late.id).status == orders.NEEDS_ATTENTION
    # The late buyer paid the discounted price: both uses count, one over the limit.
    assert PromoCode.get_by_id(one_use.id).uses == 2
    assert {use.order_id for use in PromoUse.select()} == {late.id, other.id}
