"""Tampering (OWASP WSTG-BUSL-10): whatever a buyer changes in the form, the
server prices the order; whatever a provider event claims, the wrong amount or
currency is never delivered; forged, stale and future-dated signatures and
unknown orders or payments change nothing and are answered clearly (a 4xx page
for browsers, a JSON error and a logged rejection for webhooks).

Already proven elsewhere (see docs/guarantees.md): extra amount/price/currency
fields ignored (tests/web/test_shop.py::test_buy_stores_the_order_as_the_server_prices_it),
a package of another currency, product or a disabled one refused (test_shop.py),
every bad signature shape 400 with nothing changed (tests/web/test_webhooks.py).
"""
from __future__ import annotations

import json
import logging
import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from topup import orders, pricing, worker
from topup.models import (
    CustomRate, Delivery, Order, OrderEvent, Package, Payment, Price, Product, PromoCode,
    WebhookEvent,
)
from topup.money import Money
from topup.regions import COUNTRIES
from topup.web.ops import WEBHOOK_REJECTS
from topup_plugins.sandbox import signing
from topup_plugins.sandbox.delivery import SandboxCredit

from tests.conftest import CSRF, form_tokens, place_order, sandbox_event, signed_headers
from tests.web import HX, visible

# --- the form: the server prices every order ---------------------------------------

FIELDS = ("country", "account", "package", "method", "email", "intent", "amount", "price",
          "currency", "total", "fee", "discount", "quantity", "promo", "status", "account_id",
          "product")
# Custom amounts: minor units per 1,000 coins, and the range a buyer may type.
RATES = {"USD": 1340, "IDR": 21_440_000, "BRL": 7370}
LOW, HIGH = 10, 50_000
PROMOS = {  # code: columns
    "TENOFF": {"kind": "percent", "percent_bp": 1000},
    "FIVEUSD": {"kind": "fixed", "fixed": {"USD": 500}},
    "BRONLY": {"kind": "percent", "percent_bp": 2500, "currency": "BRL"},
    "ONCEEACH": {"kind": "percent", "percent_bp": 5000, "max_uses_per_email": 1},
    "TWICE": {"kind": "fixed", "fixed": {"USD": 50, "IDR": 500_000, "BRL": 100}, "max_uses": 2},
    "OFF": {"kind": "percent", "percent_bp": 9000, "enabled": False},
}


def form_values():
    """Values a tamperer would try: real ones, near misses and nonsense."""
    packages = st.sampled_from([str(p.id) for p in Package.select()] + [
        "custom", "CUSTOM", "0", "-1", "99999", "1e3", " 1", "1.0"])
    codes = st.sampled_from([*PROMOS, "tenoff", " TenOff ", "TENOFF2", "OFF", ""])
    quantities = st.sampled_from([str(LOW), str(LOW - 1), str(HIGH), str(HIGH + 1), "1,000",
                                  " 700 ", "1e3", "-5", "0", "2147483648", "70"])
    return st.one_of(packages, codes, quantities,
                     st.sampled_from(["US", "ID", "BR", "VN", "XX", "us", "IDR", "USD",
                                      "sandbox", "buy", "refresh", "0.01", "999999999",
                                      "delivered", "demo_user", "a@example.com"]),
                     st.text(max_size=20))


@pytest.fixture
def config(config):
    config["PLUGINS"]["sandbox_payment"]["fee_percent"] = "2.5"  # the fee is the server's too
    return config


@pytest.fixture
def offers(app):
    """Custom amounts in three currencies, and promo codes with every kind of rule."""
    product = Product.get(Product.slug == "tiktok-coins")
    Product.update(custom_enabled=True, custom_min=LOW, custom_max=HIGH).execute()
    Package.custom_for(product)
    for currency, per_thousand in RATES.items():
        CustomRate.create(product=product, currency=currency, per_thousand=per_thousand)
    for code, columns in PROMOS.items():
        PromoCode.create(code=code, **columns)
    return product


def test_whatever_the_form_says_an_order_is_priced_by_the_server(app, client, offers):
    """Random extra, missing, repeated and changed fields on Buy (with a valid
    CSRF token and a fresh idempotency key), packages and custom amounts,
    promo codes valid and not: any order that comes out is priced from the
    server's own tables — the package's price or the typed quantity at the
    product's rate, in the country's currency; minus its promo code's discount
    (a code that applies here, counted within its limits); plus the method's
    fee on the rest — and its payment asks exactly that."""
    provider = app.extensions["topup"].providers["sandbox"]
    tokens = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))
    keys = iter(range(10**6))

    @settings(max_examples=150, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(pairs=st.lists(st.tuples(st.sampled_from(FIELDS), form_values()), max_size=6),
           base=st.fixed_dictionaries({
               "country": st.sampled_from(["US", "ID", "BR", "VN"]),
               "package": st.one_of(st.just("custom"), st.sampled_from([
                   str(p.id) for p in Package.select().where(Package.quantity != Package.CUSTOM)])),
               "quantity": st.sampled_from(["700", "12345", str(HIGH)]),
               "promo": st.sampled_from([*PROMOS, ""]),
               "email": st.sampled_from(["a@example.com", "b@example.com", ""])}))
    def buy(pairs, base):
        data = [("csrf_token", tokens["csrf_token"]),
                ("idempotency_key", f"tamper-key-{next(keys):08d}-xxxx")]
        data += list(pairs)  # first of a repeated key wins, so they go before the base
        data += [*base.items(), ("account", "demo_user"), ("method", "sandbox"),
                 ("intent", "buy")]
        response = client.post("/tiktok-coins", data=MultiDict(data))
        assert response.status_code in (200, 303, 422), response.status_code

    buy()
    placed = list(Order.select())
    assert {order.package.is_custom for order in placed} == {True, False}, \
        "the property was not checked on both packages and custom amounts"
    assert len({order.promo_code for order in placed}) >= 4, "too few promo codes were used"
    for order in placed:
        currency = COUNTRIES[order.country].currency
        assert order.currency == currency
        package = Package.get_by_id(order.package_id)
        if package.is_custom:
            assert LOW <= order.quantity <= HIGH
            price = pricing.custom_price(order.quantity, RATES[currency], currency)
        else:
            price = Price.get(Price.package == package.id, Price.currency == currency).money
            assert order.quantity == package.quantity
        off = Money(0, currency)
        if order.promo_code is not None:
            promo = PromoCode.get(PromoCode.code == order.promo_code)
            assert promo.enabled and promo.currency in (None, currency)
            assert promo.kind == "percent" or currency in promo.fixed
            off = pricing.discount(promo, price)
        fee = provider.fee(Money(price.amount - off.amount, currency)).amount
        assert (order.amount, order.discount, order.fee) == (
            price.amount - off.amount + fee, off.amount, fee), order.promo_code
        assert order.status == orders.AWAITING_PAYMENT
        payment = Payment.get(Payment.order == order.id)
        assert (payment.amount, payment.currency) == (order.amount, order.currency)
    for code, columns in PROMOS.items():  # counted once per order, within their limits
        promo = PromoCode.get(PromoCode.code == code)
        used = [order for order in placed if order.promo_code == code]
        assert promo.uses == len(used) <= (columns.get("max_uses") or len(used))
        if columns.get("max_uses_per_email"):
            emails = [order.email for order in used]
            assert None not in emails and len(emails) == len(set(emails))


# --- events: the wrong money is never delivered --------------------------------------


def changed(order, **data) -> bytes:
    event = json.loads(sandbox_event(order))
    event["data"].update(data)
    return json.dumps(event).encode()


@pytest.mark.parametrize("tamper", [
    pytest.param(lambda o, p: {"amount": p.amount - 1}, id="one-less"),
    pytest.param(lambda o, p: {"amount": p.amount + 1}, id="one-more"),
    pytest.param(lambda o, p: {"amount": 1}, id="a-cent"),
    pytest.param(lambda o, p: {"amount": 0}, id="nothing"),
    pytest.param(lambda o, p: {"amount": -p.amount}, id="negative"),
    pytest.param(lambda o, p: {"amount": p.amount + 2**64}, id="wraps-at-64-bits"),
    pytest.param(lambda o, p: {"amount": p.amount * 100}, id="major-units-as-minor"),
    pytest.param(lambda o, p: {"amount": o.amount - o.fee}, id="price-without-fee"),
    pytest.param(lambda o, p: {"currency": "IDR"}, id="other-currency"),
    pytest.param(lambda o, p: {"currency": "usd"}, id="currency-lowercase"),
    pytest.param(lambda o, p: {"amount": p.amount * 16000, "currency": "IDR"},
                 id="converted-currency"),
])
def test_a_paid_event_with_other_money_needs_attention_and_is_never_delivered(app, client,
                                                                           tamper):
    order = place_order(client)
    payment = order.latest_payment()
    body = changed(order, **tamper(order, payment))
    response = client.post("/webhooks/sandbox", data=body, headers=signed_headers(body))
    assert response.status_code == 200 and response.get_json()["outcomes"] == ["applied"]
    assert Order.get_by_id(order.id).status == orders.NEEDS_ATTENTION
    why = OrderEvent.select().where(OrderEvent.order == order.id,
                                    OrderEvent.to_status == orders.NEEDS_ATTENTION).get()
    assert f"expected {payment.amount} {payment.currency}" in why.message
    # the worker finds nothing to deliver; the right amount told later changes nothing
    assert worker.deliver_once(app) is False
    right = sandbox_event(order, event_id="evt_right_amount_later")
    assert client.post("/webhooks/sandbox", data=right,
                       headers=signed_headers(right)).get_json()["outcomes"] == ["ignored"]
    assert worker.deliver_once(app) is False
    assert Delivery.select().count() == 0 and SandboxCredit.select().count() == 0
    assert Order.get_by_id(order.id).status == orders.NEEDS_ATTENTION
    page = visible(client.get(f"/orders/{order.public_id}"))
    assert "Delivered" not in page


@pytest.mark.parametrize("amount", [0.94, "94", None, True, [94], {"value": 94}])
def test_an_amount_that_is_not_whole_minor_units_is_rejected(client, amount):
    order = place_order(client)
    body = changed(order, amount=amount)
    response = client.post("/webhooks/sandbox", data=body, headers=signed_headers(body))
    assert response.status_code == 400 and response.get_json()["error"] == "rejected"
    assert Order.get_by_id(order.id).status == orders.AWAITING_PAYMENT
    assert WebhookEvent.select().count() == 0


# --- signatures: refused, logged, counted ---------------------------------------------


def rejects() -> float:
    return WEBHOOK_REJECTS.labels("sandbox")._value.get()


def snapshot():
    return (list(Order.select(Order.id, Order.status).tuples()),
            list(Payment.select(Payment.id, Payment.status).tuples()),
            WebhookEvent.select().count(), Delivery.select().count(), OrderEvent.select().count())


@pytest.mark.parametrize("make_headers", [
    pytest.param(lambda body: {signing.HEADER: signed_headers(body)[signing.HEADER][:-2] + "00"},
                 id="forged"),
    pytest.param(lambda body: signed_headers(body, secret="whsec_guess_" + "z" * 24),
                 id="other-secret"),
    pytest.param(lambda body: signed_headers(body, timestamp=int(time.time()) - 3600),
                 id="stale-an-hour"),
    pytest.param(lambda body: signed_headers(body, timestamp=math.ceil(time.time()) + 3600),
                 id="future-an-hour"),
    pytest.param(lambda body: signed_headers(body, timestamp=0), id="epoch"),
    pytest.param(lambda body: signed_headers(body.replace(b"succeeded", b"failed")),
                 id="signed-for-another-body"),
    pytest.param(lambda body: {}, id="unsigned"),
])
def test_a_bad_signature_is_refused_logged_counted_and_changes_nothing(client, caplog,
                                                                      make_headers):
    order = place_order(client)
    body = sandbox_event(order)
    before, counted = snapshot(), rejects()
    with caplog.at_level(logging.WARNING, logger="topup.web.webhooks"):
        response = client.post("/webhooks/sandbox", data=body,
                               headers={"Content-Type": "application/json", **make_headers(body)})
    assert response.status_code == 400
    assert response.is_json and response.get_json()["error"] == "rejected"
    assert response.get_json()["reason"]
    assert snapshot() == before
    assert rejects() == counted + 1
    logged = [r for r in caplog.records if r.name == "topup.web.webhooks"]
    assert len(logged) == 1 and logged[0].levelno == logging.WARNING
    assert "rejected sandbox webhook" in logged[0].getMessage()
    assert "whsec_" not in logged[0].getMessage()  # the secret never reaches the log


def test_an_event_for_an_unknown_payment_is_404_logged_and_not_recorded(client, caplog):
    order = place_order(client)
    body = changed(order, payment_id="sbx_not_ours_at_all")
    before = snapshot()
    with caplog.at_level(logging.WARNING, logger="topup.orders"):
        response = client.post("/webhooks/sandbox", data=body, headers=signed_headers(body))
    assert response.status_code == 404
    assert response.get_json() == {"error": "unknown payment", "outcomes": ["unknown payment"]}
    assert snapshot() == before
    assert any("names unknown payment 'sbx_not_ours_at_all'" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)


def test_an_event_for_an_unknown_provider_is_404_json(client):
    order = place_order(client)
    body = sandbox_event(order)
    before = snapshot()
    response = client.post("/webhooks/paypal", data=body, headers=signed_headers(body))
    assert response.status_code == 404 and response.get_json() == {"error": "unknown provider"}
    assert snapshot() == before


# --- unknown orders for browsers: a clear 4xx page, nothing changed ---------------------


@pytest.fixture
def operator_client(app, runner):
    from tests.web.admin.conftest import sign_in

    return sign_in(app.test_client(), runner)


def token_of(client, path="/tiktok-coins"):
    return CSRF.search(client.get(path).get_data(as_text=True)).group(1)


@pytest.mark.parametrize("method, path, message", [
    ("GET", "/orders/{unknown}", "There is no order at this address"),
    ("GET", "/orders/{unknown}/live", "There is no order at this address"),
    ("GET", "/sandbox/checkout/sbx_{unknown}", "This sandbox checkout does not exist"),
    ("POST", "/sandbox/checkout/sbx_{unknown}", "This sandbox checkout does not exist"),
    ("GET", "/admin/orders/{unknown}", "There is no order x"),
    ("POST", "/admin/orders/{unknown}/mark-paid", "There is no order x"),
    ("POST", "/admin/orders/{known}/pay-twice", "There is no such action"),
])
def test_an_unknown_order_payment_or_action_is_a_clear_404(operator_client, client, method, path,
                                                          message):
    order = place_order(client)
    path = path.format(unknown="x" + order.public_id[1:] + "x", known=order.public_id)
    before = snapshot()
    who = operator_client if path.startswith("/admin") else client
    if method == "GET":
        response = who.get(path, headers=HX if path.endswith("/live") else {})
    else:
        response = who.post(path, data={"csrf_token": token_of(who), "decision": "approve",
                                        "reference": "BANK-1"})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert message in visible(response)
    assert snapshot() == before
