"""Provider webhooks: signature, freshness, shape, replay; and the sandbox's real
HTTP round trip (checkout -> signed webhook -> paid -> worker -> delivered)."""
from __future__ import annotations

import http.cookiejar
import json
import math
import re
import time
import urllib.parse
import urllib.request

import pytest

from topup import orders
from topup.models import Delivery, Order, OrderEvent, Payment, WebhookEvent
from topup_plugins.sandbox import signing
from topup_plugins.sandbox.payment import SandboxCheckout

from tests.conftest import (
    CSRF, form_tokens, package_id, place_order, plugin_problems, sandbox_event, signed_headers,
    wait_for,
)
from tests.web import visible


def post(client, payload: bytes, headers=None, provider="sandbox"):
    return client.post(f"/webhooks/{provider}", data=payload,
                       headers=signed_headers(payload) if headers is None else headers)


def snapshot(order):
    """Everything a webhook may change."""
    payment = Payment.get_by_id(order.latest_payment().id)
    return (Order.get_by_id(order.id).status, payment.status, WebhookEvent.select().count(),
            Delivery.select().count(), OrderEvent.select().count())


def test_a_valid_signed_event_pays_the_order(client):
    order = place_order(client)
    response = post(client, sandbox_event(order))
    assert response.status_code == 200
    assert response.get_json() == {"ok": True, "outcomes": ["applied"]}
    assert Order.get_by_id(order.id).status == orders.PAID
    assert order.latest_payment().status == "succeeded"
    assert Delivery.select().where(Delivery.order == order).count() == 1
    event = WebhookEvent.get()
    assert (event.provider, event.order_id, event.outcome) == ("sandbox", order.id, "applied")


def unknown_payment(order) -> bytes:
    data = json.loads(sandbox_event(order))
    data["data"]["payment_id"] = "sbx_nobody_knows"
    data["id"] = "evt_unknown"
    return json.dumps(data).encode()


@pytest.mark.parametrize("make_events, code, outcome, status", [
    pytest.param(lambda o: [sandbox_event(o, "failed")], 200, "applied", orders.FAILED,
                 id="failure-applied"),
    pytest.param(lambda o: [sandbox_event(o, amount=o.amount - 1)], 200, "applied",
                 orders.NEEDS_ATTENTION, id="wrong-amount-applied"),
    pytest.param(lambda o: [sandbox_event(o, currency="IDR")], 200, "applied",
                 orders.NEEDS_ATTENTION, id="wrong-currency-applied"),
    pytest.param(lambda o: [sandbox_event(o)] * 2, 200, "duplicate", orders.PAID,
                 id="replay-duplicate"),
    pytest.param(lambda o: [sandbox_event(o), sandbox_event(o, "failed")], 200, "ignored",
                 orders.PAID, id="late-failure-ignored"),
    pytest.param(lambda o: [unknown_payment(o)], 404, "unknown payment",
                 orders.AWAITING_PAYMENT, id="unknown-payment"),
])
def test_each_outcome_has_its_http_status(client, make_events, code, outcome, status):
    """200 tells the provider to stop sending; 404 (not ours, or not yet) makes it
    retry, so that event id is not recorded and a retry can still apply."""
    order = place_order(client)
    *earlier, last = make_events(order)
    for payload in earlier:
        assert post(client, payload).status_code == 200
    response = post(client, last)
    assert response.status_code == code
    assert response.get_json()["outcomes"] == [outcome]
    assert Order.get_by_id(order.id).status == status
    recorded = WebhookEvent.select().where(WebhookEvent.event_id == json.loads(last)["id"])
    assert recorded.count() == (0 if code == 404 else 1)


def forged(payload):
    good = signed_headers(payload)[signing.HEADER]
    return {"Content-Type": "application/json",
            signing.HEADER: good[:-4] + ("0000" if not good.endswith("0000") else "1111")}


def other_body(payload):
    # signed for one body, sent with another (amount changed)
    event = json.loads(payload)
    event["data"]["amount"] = 1
    return signed_headers(json.dumps(event).encode())


@pytest.mark.parametrize("make_headers", [
    pytest.param(forged, id="forged-signature"),
    pytest.param(other_body, id="signature-of-another-body"),
    pytest.param(lambda p: signed_headers(p, secret="whsec_wrong_" + "y" * 24), id="wrong-secret"),
    pytest.param(lambda p: signed_headers(p, timestamp=int(time.time()) - 301), id="stale"),
    pytest.param(lambda p: signed_headers(p, timestamp=math.ceil(time.time()) + 330), id="future"),
    pytest.param(lambda p: {"Content-Type": "application/json"}, id="missing-header"),
    pytest.param(lambda p: {signing.HEADER: ""}, id="empty-header"),
    pytest.param(lambda p: {signing.HEADER: "garbage"}, id="garbage-header"),
    pytest.param(lambda p: {signing.HEADER: f"t={int(time.time())}"}, id="no-v1"),
    pytest.param(lambda p: {signing.HEADER: "t=abc,v1=00"}, id="bad-timestamp"),
    pytest.param(lambda p: {signing.HEADER: signed_headers(p)[signing.HEADER].split(",")[1]},
                 id="no-timestamp"),
])
def test_a_bad_signature_is_400_and_changes_nothing(client, make_headers):
    order = place_order(client)
    payload = sandbox_event(order)
    before = snapshot(order)
    response = post(client, payload, headers=make_headers(payload))
    assert response.status_code == 400
    assert response.get_json()["error"] == "rejected"
    assert snapshot(order) == before
    assert Order.get_by_id(order.id).status == orders.AWAITING_PAYMENT


def test_a_signature_within_the_tolerance_is_accepted(client):
    order = place_order(client)
    payload = sandbox_event(order)
    response = post(client, payload, headers=signed_headers(payload, timestamp=int(time.time()) - 200))
    assert response.status_code == 200
    assert Order.get_by_id(order.id).status == orders.PAID


def test_one_good_signature_among_several_is_enough(client):
    # Stripe-style rotation: several v1 values, one of them made with the current secret
    order = place_order(client)
    payload = sandbox_event(order)
    good = signed_headers(payload)[signing.HEADER]
    timestamp, mac = good.split(",")
    headers = {signing.HEADER: f"{timestamp},v1={'0' * 64},{mac}"}
    assert post(client, payload, headers=headers).status_code == 200


def event(order, **changes) -> bytes:
    data = json.loads(sandbox_event(order))
    data.update(changes)
    return json.dumps(data).encode()


def without(order, key) -> bytes:
    data = json.loads(sandbox_event(order))
    del data[key]
    return json.dumps(data).encode()


def with_amount(order, amount) -> bytes:
    data = json.loads(sandbox_event(order))
    data["data"]["amount"] = amount
    return json.dumps(data).encode()


@pytest.mark.parametrize("make_payload", [
    pytest.param(lambda o: b"{not json", id="malformed-json"),
    pytest.param(lambda o: b"", id="empty-body"),
    pytest.param(lambda o: b"\xff\xfe\x00", id="not-utf8"),
    pytest.param(lambda o: b"[1, 2, 3]", id="array"),
    pytest.param(lambda o: b'"payment.succeeded"', id="string"),
    pytest.param(lambda o: b"null", id="null"),
    pytest.param(lambda o: b"42", id="number"),
    pytest.param(lambda o: event(o, type="payment.bogus"), id="unknown-event-type"),
    pytest.param(lambda o: event(o, type="charge"), id="type-without-dot"),
    pytest.param(lambda o: event(o, type=None), id="type-null"),
    pytest.param(lambda o: event(o, data=None), id="data-null"),
    pytest.param(lambda o: event(o, data="x"), id="data-string"),
    pytest.param(lambda o: event(o, data={"payment_id": "x"}), id="data-incomplete"),
    pytest.param(lambda o: without(o, "id"), id="no-id"),
    pytest.param(lambda o: without(o, "type"), id="no-type"),
    pytest.param(lambda o: with_amount(o, "lots"), id="amount-not-a-number"),
])
def test_a_malformed_event_is_400_and_changes_nothing(client, make_payload):
    order = place_order(client)
    payload = make_payload(order)
    before = snapshot(order)
    response = post(client, payload)  # correctly signed: only the content is wrong
    assert response.status_code == 400
    assert response.get_json()["error"] == "rejected"
    assert snapshot(order) == before


def test_unknown_provider_is_404(client):
    order = place_order(client)
    payload = sandbox_event(order)
    response = post(client, payload, provider="stripe")
    assert response.status_code == 404
    assert response.get_json() == {"error": "unknown provider"}
    assert Order.get_by_id(order.id).status == orders.AWAITING_PAYMENT


def test_webhooks_need_no_csrf_token_even_with_a_session(client):
    client.get("/tiktok-coins")  # the client now has a session cookie with a CSRF secret
    order = place_order(client)
    response = post(client, sandbox_event(order))
    assert response.status_code == 200
    assert Order.get_by_id(order.id).status == orders.PAID


def test_webhook_errors_are_json_not_html(client):
    response = client.get("/webhooks/sandbox")
    assert response.status_code == 405
    assert response.is_json and "<html" not in response.get_data(as_text=True)


def test_an_oversized_webhook_is_413_not_a_plugin_failure(client, app):
    """A body over MAX_CONTENT_LENGTH is the sender's fault: 413, and the
    provider is not recorded as broken (503 would make a provider retry forever)."""
    response = client.post("/webhooks/sandbox", data=b"x" * 100_000,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.is_json
    assert "sandbox" not in plugin_problems()


# --- the sandbox round trip over real HTTP ----------------------------------------


class Browser:
    """A tiny cookie-keeping HTTP client (urllib follows 303s as GET, like a browser)."""

    def __init__(self, base):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path):
        with self.opener.open(self.base + path, timeout=10) as response:
            return response.geturl(), response.read().decode()

    def post(self, path, fields):
        data = urllib.parse.urlencode(fields).encode()
        with self.opener.open(self.base + path, data=data, timeout=10) as response:
            return response.geturl(), response.read().decode()


def test_the_whole_purchase_over_http(live_server):
    browser = Browser(live_server.url)
    _, page = browser.get("/tiktok-coins?country=VN")
    assert "₫24,000" in page
    url, page = browser.post("/tiktok-coins", {
        **form_tokens(page), "country": "VN", "account": "@Demo_User",
        "package": str(package_id(70)), "method": "sandbox", "email": "", "intent": "buy"})
    public_id = re.fullmatch(rf"{re.escape(live_server.url)}/orders/([\w-]+)", url).group(1)
    assert "Waiting for your payment" in page
    checkout_path = re.search(r'href="(/sandbox/checkout/[^"]+)"', page).group(1)
    _, checkout = browser.get(checkout_path)
    assert "₫24,000" in visible(checkout)
    url, page = browser.post(checkout_path, {"csrf_token": CSRF.search(checkout).group(1),
                                             "decision": "approve"})
    assert url == f"{live_server.url}/orders/{public_id}"
    wait_for(lambda: Order.get(Order.public_id == public_id).status == orders.DELIVERED)
    order = Order.get(Order.public_id == public_id)
    assert (order.amount, order.currency, order.account_id) == (24000, "VND", "demo_user")
    assert SandboxCheckout.get().status == "approved"
    _, page = browser.get(f"/orders/{public_id}")
    assert "70 coins were added to @demo_user." in visible(page)
    assert 'http-equiv="refresh"' not in page


def test_declining_over_http_fails_the_order(live_server):
    browser = Browser(live_server.url)
    _, page = browser.get("/tiktok-coins")
    url, page = browser.post("/tiktok-coins", {
        **form_tokens(page), "country": "US", "account": "demo_user",
        "package": str(package_id(30)), "method": "sandbox", "intent": "buy"})
    public_id = url.rsplit("/", 1)[1]
    checkout_path = re.search(r'href="(/sandbox/checkout/[^"]+)"', page).group(1)
    _, checkout = browser.get(checkout_path)
    browser.post(checkout_path, {"csrf_token": CSRF.search(checkout).group(1),
                                 "decision": "decline"})
    wait_for(lambda: Order.get(Order.public_id == public_id).status == orders.FAILED)
    _, page = browser.get(f"/orders/{public_id}")
    assert "Try again" in page and Delivery.select().count() == 0
