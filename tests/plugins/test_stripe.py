"""The Stripe Checkout plugin, against two local stand-ins for api.stripe.com:

- localstripe (PyPI), run in a subprocess on a free loopback port, for what it
  implements: PaymentIntents and refunds (and a real third-party webhook signer);
- CheckoutAPI, a small stdlib HTTP server in this module, for what localstripe
  lacks: Checkout Sessions (form-encoded POST /v1/checkout/sessions, GET
  /v1/checkout/sessions/<id>, Stripe's error JSON and status codes). Every other
  path is forwarded to localstripe, so the SDK needs one api_base.

Webhook signatures come from the SDK's own signer
(stripe.WebhookSignature.generate_signature_header), never a hand-built HMAC.
"""
from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest
import stripe

from topup import create_app, orders
from topup.models import Delivery, Order, OrderEvent, Payment, WebhookEvent
from topup.money import Money, digits
from topup.payments import NotConfigured, PaymentEvent
from topup.regions import COUNTRIES
from topup_plugins.stripe_checkout.provider import (
    MAX_SESSION_SECONDS, MIN_SESSION_SECONDS, STRIPE_DIGITS, StripeCheckout, session_expiry)

from tests.conftest import buy, place_order, plugin_problems, wait_for

SECRET_KEY = "sk_test_" + "K3y" * 10
WEBHOOK_SECRET = "whsec_" + "S3cr3t" * 6

LOCALSTRIPE_LAUNCHER = """\
import sys
from aiohttp import web
from localstripe import resources, server
# Keep the store in memory (localstripe pickles it to a fixed /tmp path otherwise)
# and listen on loopback only (its own start() binds every interface).
resources.Store.dump_to_disk = lambda self: None
web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def localstripe(tmp_path_factory):
    launcher = tmp_path_factory.mktemp("localstripe") / "launch.py"
    launcher.write_text(LOCALSTRIPE_LAUNCHER)
    port = free_port()
    process = subprocess.Popen([sys.executable, str(launcher), str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("localstripe did not start: "
                                       + process.stderr.read().decode(errors="replace"))
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()


# --- a local Checkout Sessions API ------------------------------------------------------


def stripe_error(status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
    error = {"type": kind, "message": message}
    if param:
        error["param"] = param
    if code:
        error["code"] = code
    return status, {"error": error}


class CheckoutAPI:
    """Checkout Sessions as documented (docs.stripe.com/api/checkout/sessions),
    in memory; anything else is forwarded to localstripe."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.sessions: dict[str, dict] = {}
        self.created: list[dict] = []  # the form fields of each accepted create
        self.retrieved: list[str] = []
        self.idempotent: dict[str, tuple[dict, tuple]] = {}
        self.fail_next: tuple | None = None
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _answer(self, status: int, body: dict | bytes, content_type="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_" + secrets.token_hex(7))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                if not path.startswith("/v1/checkout/sessions"):
                    return self._answer(*api.forward(self.command, self.path, body, self.headers))
                if self.headers.get("Authorization") != f"Bearer {SECRET_KEY}":
                    return self._answer(*stripe_error(
                        401, "Invalid API Key provided: sk_test_****", kind="invalid_request_error"))
                if self.command == "POST" and path == "/v1/checkout/sessions":
                    fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
                    return self._answer(*api.create(fields, self.headers.get("Idempotency-Key")))
                if self.command == "GET" and path.count("/") == 4:
                    return self._answer(*api.retrieve(path.rsplit("/", 1)[1]))
                return self._answer(*stripe_error(404, f"Unrecognized request URL ({self.command}: "
                                                       f"{path})."))

            do_GET = do_POST = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    # the documented endpoints

    def create(self, fields: dict, idempotency_key: str | None):
        with self.lock:
            if idempotency_key and idempotency_key in self.idempotent:
                seen_fields, answer = self.idempotent[idempotency_key]
                if seen_fields != fields:
                    return stripe_error(400, "Keys for idempotent requests can only be used with "
                                             "the same parameters they were first used with.",
                                        kind="idempotency_error")
                return answer
            answer = self._create(fields)
            if idempotency_key and answer[0] < 500:
                self.idempotent[idempotency_key] = (fields, answer)
            return answer

    def _create(self, f: dict):
        if self.fail_next:
            answer, self.fail_next = self.fail_next, None
            return answer
        if f.get("mode") not in ("payment", "setup", "subscription"):
            return stripe_error(400, "Missing required param: mode.", "mode", "parameter_missing")
        if f.get("mode") != "payment":
            return stripe_error(400, "This test server only does mode=payment.", "mode")
        if not f.get("success_url", "").startswith(("http://", "https://")):
            return stripe_error(400, "Not a valid URL", "success_url", "url_invalid")
        prefix = "line_items[0]"
        if f"{prefix}[price_data][currency]" not in f and f"{prefix}[price]" not in f:
            return stripe_error(400, "You must specify either `price` or `price_data` in each "
                                     "line item.", "line_items[0]")
        currency = f.get(f"{prefix}[price_data][currency]", "")
        if len(currency) != 3 or not currency.isalpha() or not currency.islower():
            return stripe_error(400, f"Invalid currency: {currency}.",
                                f"{prefix}[price_data][currency]", "parameter_invalid_string")
        unit = f.get(f"{prefix}[price_data][unit_amount]", "")
        if not unit.isdigit():
            return stripe_error(400, "Invalid integer: " + unit,
                                f"{prefix}[price_data][unit_amount]", "parameter_invalid_integer")
        if not f.get(f"{prefix}[price_data][product_data][name]"):
            return stripe_error(400, "Missing required param: line_items[0][price_data]"
                                     "[product_data][name].", "line_items[0][price_data]"
                                     "[product_data][name]", "parameter_missing")
        quantity = f.get(f"{prefix}[quantity]", "")
        if not quantity.isdigit() or int(quantity) < 1:
            return stripe_error(400, "Missing required param: line_items[0][quantity].",
                                f"{prefix}[quantity]", "parameter_missing")
        now = int(time.time())
        expires_at = int(f.get("expires_at") or now + 24 * 3600)
        if not now + 30 * 60 <= expires_at <= now + 24 * 3600:
            return stripe_error(400, "The `expires_at` timestamp must be between 30 minutes and "
                                     "24 hours from Checkout Session creation.", "expires_at")
        session_id = "cs_test_" + secrets.token_urlsafe(24).replace("-", "a").replace("_", "b")
        metadata = {k[len("metadata["):-1]: v for k, v in f.items() if k.startswith("metadata[")}
        session = {
            "id": session_id, "object": "checkout.session", "livemode": False,
            "mode": "payment", "status": "open", "payment_status": "unpaid",
            "amount_subtotal": int(unit) * int(quantity), "amount_total": int(unit) * int(quantity),
            "currency": currency, "client_reference_id": f.get("client_reference_id"),
            "metadata": metadata, "payment_intent": None, "created": now, "expires_at": expires_at,
            "success_url": f["success_url"], "cancel_url": f.get("cancel_url"),
            "url": f"https://checkout.stripe.com/c/pay/{session_id}#fidkdWxOYHwnPyd1blpxYHZxWjA0",
        }
        self.sessions[session_id] = session
        self.created.append(f)
        return 200, session

    def retrieve(self, session_id: str):
        with self.lock:
            self.retrieved.append(session_id)
            session = self.sessions.get(session_id)
            if session is None:
                return stripe_error(404, f"No such checkout.session: '{session_id}'", "session",
                                    "resource_missing")
            return 200, dict(session)

    def forward(self, method: str, path: str, body: bytes, headers):
        forwarded = {k: v for k, v in headers.items()
                     if k.lower() in ("authorization", "content-type", "idempotency-key",
                                      "stripe-version")}
        request = urllib.request.Request(self.upstream + path, data=body or None, method=method,
                                         headers=forwarded)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read()

    # what happens on Stripe's side while the buyer pays

    def update(self, session_id: str, **fields) -> dict:
        with self.lock:
            self.sessions[session_id].update(fields)
            return dict(self.sessions[session_id])

    def complete(self, session_id: str, payment_status: str = "paid", **fields) -> dict:
        return self.update(session_id, status="complete", payment_status=payment_status, **fields)


@pytest.fixture
def checkout_api(localstripe):
    api = CheckoutAPI(localstripe)
    yield api
    api.close()


@pytest.fixture
def config(config, checkout_api):
    config["PLUGINS"] = {**config["PLUGINS"], "stripe_checkout": {
        "secret_key": SECRET_KEY, "webhook_secret": WEBHOOK_SECRET,
        "api_base": checkout_api.url}}
    return config


@pytest.fixture
def provider(app) -> StripeCheckout:
    return app.extensions["topup"].providers["stripe"]


def stripe_order(client, country="US", **kwargs) -> Order:
    return place_order(client, country=country, method="stripe", **kwargs)


def event_body(session: dict, event_type="checkout.session.completed", event_id=None) -> bytes:
    return json.dumps({
        "id": event_id or "evt_" + secrets.token_hex(12), "object": "event",
        "api_version": stripe.api_version, "created": int(time.time()), "livemode": False,
        "pending_webhooks": 1, "type": event_type, "data": {"object": session},
    }).encode()


def signature(body: bytes, secret=WEBHOOK_SECRET, timestamp=None) -> str:
    return stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp)


def post_event(client, body: bytes, header: str | None = "sign"):
    headers = {"Content-Type": "application/json"}
    if header == "sign":
        header = signature(body)
    if header is not None:
        headers["Stripe-Signature"] = header
    return client.post("/webhooks/stripe", data=body, headers=headers)


def refreshed(order: Order) -> Order:
    return Order.get_by_id(order.id)


# --- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [
    {}, {"secret_key": SECRET_KEY}, {"webhook_secret": WEBHOOK_SECRET},
    {"secret_key": " ", "webhook_secret": WEBHOOK_SECRET},
])
def test_without_both_keys_it_is_not_configured(settings):
    with pytest.raises(NotConfigured):
        StripeCheckout(settings)


def test_an_app_without_stripe_settings_does_not_offer_it(config):
    del config["PLUGINS"]["stripe_checkout"]
    registry = create_app(config).extensions["topup"]
    assert "stripe" not in registry.providers
    assert "stripe" in registry.not_configured and "stripe_checkout" not in registry.errors


def test_keys_come_from_the_environment_and_are_never_shown(config, monkeypatch):
    monkeypatch.setenv("TEST_STRIPE_SK", SECRET_KEY)
    monkeypatch.setenv("TEST_STRIPE_WHSEC", WEBHOOK_SECRET)
    config["PLUGINS"]["stripe_checkout"].update(secret_key={"$env": "TEST_STRIPE_SK"},
                                                webhook_secret={"$env": "TEST_STRIPE_WHSEC"})
    provider = create_app(config).extensions["topup"].providers["stripe"]
    assert SECRET_KEY not in repr(provider) and SECRET_KEY not in repr(provider.settings)
    assert WEBHOOK_SECRET not in repr(provider.settings)
    # a publishable key by mistake: refused, without echoing it
    config["PLUGINS"]["stripe_checkout"]["secret_key"] = "pk_test_" + "p" * 24
    registry = create_app(config).extensions["topup"]
    assert "stripe" not in registry.providers
    assert "secret_key" in registry.errors["stripe_checkout"]
    assert "pk_test_" not in registry.errors["stripe_checkout"]


# --- currencies ---------------------------------------------------------------------------


def test_minor_units_are_the_same_in_stripe_and_in_the_shop():
    # Stripe (docs.stripe.com/currencies): VND zero-decimal, the rest two-decimal in the API.
    assert STRIPE_DIGITS == {"USD": 2, "EUR": 2, "IDR": 2, "PHP": 2, "BRL": 2, "THB": 2,
                             "INR": 2, "MXN": 2, "VND": 0}
    for currency, stripe_digits in STRIPE_DIGITS.items():
        assert digits(currency) == stripe_digits, currency


def test_offered_in_every_country_the_shop_sells_in(app, client, provider):
    registry = app.extensions["topup"]
    for code, country in COUNTRIES.items():
        assert provider in registry.payment_methods(code, country.currency), code
        page = client.get(f"/tiktok-coins?country={code}").get_data(as_text=True)
        assert 'value="stripe"' in page, code
    assert provider.serves("DE", "EUR")


@pytest.mark.parametrize("currency", ["ISK", "HUF", "TWD", "UGX", "JPY", "KWD", "XXX"])
def test_currencies_it_cannot_map_exactly_are_refused(provider, currency):
    assert not provider.serves("US", currency)


def test_stripe_limits():
    provider = StripeCheckout({"secret_key": SECRET_KEY, "webhook_secret": WEBHOOK_SECRET})
    assert not provider.accepts(Money(49, "USD")) and provider.accepts(Money(50, "USD"))
    assert provider.accepts(Money(99_999_999, "IDR"))
    assert not provider.accepts(Money(100_000_000, "IDR"))  # more than eight digits


# --- start ---------------------------------------------------------------------------------


def test_session_expiry_follows_the_order_within_stripes_window():
    now = 1_800_000_000.0
    at = datetime.fromtimestamp(now, timezone.utc).replace(tzinfo=None)  # naive UTC, as stored
    assert session_expiry(at + timedelta(hours=2), now) == now + 7200
    assert session_expiry(at + timedelta(minutes=10), now) == now + MIN_SESSION_SECONDS
    assert session_expiry(at - timedelta(minutes=10), now) == now + MIN_SESSION_SECONDS
    assert session_expiry(at + timedelta(days=3), now) == now + MAX_SESSION_SECONDS
    assert 30 * 60 < MIN_SESSION_SECONDS < MAX_SESSION_SECONDS < 24 * 3600


@pytest.mark.parametrize("country,currency", [("US", "usd"), ("ID", "idr"), ("VN", "vnd"),
                                              ("IN", "inr")])
def test_start_creates_a_checkout_session_and_the_page_links_to_it(
        app, client, checkout_api, country, currency):
    response = buy(client, country=country, method="stripe")
    assert response.status_code == 303, response.get_data(as_text=True)
    order = Order.get(Order.public_id == response.headers["Location"].rsplit("/", 1)[1])
    [sent] = checkout_api.created
    assert sent["mode"] == "payment"
    assert sent["line_items[0][price_data][currency]"] == currency
    assert sent["line_items[0][price_data][unit_amount]"] == str(order.amount)
    assert sent["line_items[0][quantity]"] == "1"
    assert sent["line_items[0][price_data][product_data][name]"] == "70 TikTok Coins"
    assert sent["client_reference_id"] == order.public_id
    assert sent["metadata[order_id]"] == order.public_id
    assert sent["success_url"] == sent["cancel_url"]
    assert sent["success_url"].endswith(f"/orders/{order.public_id}")
    expires = int(sent["expires_at"])
    assert time.time() + 30 * 60 < expires < time.time() + 24 * 3600

    payment = order.latest_payment()
    session = checkout_api.sessions[payment.provider_ref]
    assert payment.provider_ref.startswith("cs_test_") and payment.status == "started"
    assert Money(session["amount_total"], session["currency"].upper()) == order.total
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f'href="{session["url"]}"' in page.replace("&amp;", "&")


def test_the_session_lives_as_long_as_a_long_order(config, checkout_api):
    config["ORDER_TTL_SECONDS"] = 6 * 3600
    app = create_app(config)
    from topup import demo, schema

    with app.app_context():
        schema.drop_all(app.extensions["topup"].pm)
        schema.create_all(app.extensions["topup"].pm)
        demo.seed()
    order = stripe_order(app.test_client())
    assert int(checkout_api.created[0]["expires_at"]) == \
        int(order.expires_at.replace(tzinfo=timezone.utc).timestamp())


def test_a_refused_session_fails_the_order_and_logs_no_key(app, client, checkout_api, caplog):
    checkout_api.fail_next = stripe_error(400, "Invalid currency: usd.", "currency")
    response = buy(client, method="stripe")
    assert response.status_code != 303
    assert "not working right now" in response.get_data(as_text=True)
    order = Order.get()
    assert order.status == "failed" and order.latest_payment().status == "failed"
    errors = plugin_problems()
    assert "Invalid currency" in errors["stripe"]
    for text in (caplog.text, errors["stripe"], order.latest_payment().error or ""):
        assert SECRET_KEY not in text and WEBHOOK_SECRET not in text


# --- webhooks ------------------------------------------------------------------------------


def test_completed_and_paid_makes_the_order_paid_once(app, client, checkout_api):
    order = stripe_order(client)
    session = checkout_api.complete(order.latest_payment().provider_ref)
    body = event_body(session)
    response = post_event(client, body)
    assert response.status_code == 200 and response.json["outcomes"] == ["applied"]
    assert refreshed(order).status == "paid"
    assert Delivery.select().where(Delivery.order == order.id).count() == 1
    # Stripe retries, or an attacker replays the signed body: nothing changes
    again = post_event(client, body)
    assert again.status_code == 200 and again.json["outcomes"] == ["duplicate"]
    assert Delivery.select().where(Delivery.order == order.id).count() == 1
    assert WebhookEvent.select().count() == 1


def test_paid_then_delivered_by_the_worker(app, client, checkout_api, live_server):
    order = stripe_order(client)
    session = checkout_api.complete(order.latest_payment().provider_ref)
    body = event_body(session)
    request = urllib.request.Request(
        live_server.url + "/webhooks/stripe", data=body, method="POST",
        headers={"Content-Type": "application/json", "Stripe-Signature": signature(body)})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    wait_for(lambda: refreshed(order).status == "delivered")


def _forged(body):
    return signature(body, secret="whsec_" + "nope" * 8)


@pytest.mark.parametrize("how", ["wrong secret", "stale", "future", "missing", "garbage",
                                 "tampered body"])
def test_a_bad_signature_is_refused_before_anything_is_read(app, client, checkout_api, how):
    order = stripe_order(client)
    session = checkout_api.complete(order.latest_payment().provider_ref)
    body = event_body(session)
    header = {
        "wrong secret": _forged(body),
        "stale": signature(body, timestamp=int(time.time()) - 301),
        "future": signature(body, timestamp=int(time.time()) + 330),  # beyond 300 s even on a slow run
        "missing": None,
        "garbage": "t=abc,v1=",
        "tampered body": signature(body),
    }[how]
    if how == "tampered body":
        body = body.replace(b'"livemode": false', b'"livemode": true ')
    response = post_event(client, body, header)
    assert response.status_code == 400 and response.json["error"] == "rejected"
    assert refreshed(order).status == "awaiting_payment"
    assert WebhookEvent.select().count() == 0
    assert checkout_api.retrieved == []  # the API was not even asked


def test_a_signature_a_little_old_is_still_fine(app, client, checkout_api):
    order = stripe_order(client)
    body = event_body(checkout_api.complete(order.latest_payment().provider_ref))
    response = post_event(client, body, signature(body, timestamp=int(time.time()) - 200))
    assert response.status_code == 200 and refreshed(order).status == "paid"


def test_the_claim_is_checked_with_the_api(app, client, checkout_api):
    """A signed event saying "paid" while the API says the session is unpaid:
    the API wins (pending, for an async method), the order is not paid."""
    order = stripe_order(client)
    ref = order.latest_payment().provider_ref
    real = checkout_api.complete(ref, payment_status="unpaid")
    claim = {**real, "payment_status": "paid"}
    response = post_event(client, event_body(claim))
    assert response.status_code == 200, response.json
    assert refreshed(order).status == "awaiting_payment"
    assert Payment.get_by_id(order.latest_payment().id).status == "pending"
    assert checkout_api.retrieved == [ref]


def test_a_claim_about_a_session_still_open_changes_nothing(app, client, checkout_api):
    order = stripe_order(client)
    ref = order.latest_payment().provider_ref
    claim = {**checkout_api.sessions[ref], "status": "complete", "payment_status": "paid"}
    response = post_event(client, event_body(claim))
    assert response.status_code == 200 and response.json["outcomes"] == []
    assert refreshed(order).status == "awaiting_payment"


def test_async_payment_pending_then_succeeded(app, client, checkout_api):
    order = stripe_order(client, country="BR")
    ref = order.latest_payment().provider_ref
    post_event(client, event_body(checkout_api.complete(ref, payment_status="unpaid")))
    assert refreshed(order).status == "awaiting_payment"
    assert Payment.get_by_id(order.latest_payment().id).status == "pending"
    session = checkout_api.complete(ref, payment_status="paid")
    response = post_event(client, event_body(session, "checkout.session.async_payment_succeeded"))
    assert response.json["outcomes"] == ["applied"] and refreshed(order).status == "paid"


def test_async_payment_failed_fails_the_order(app, client, checkout_api):
    order = stripe_order(client, country="MX")
    session = checkout_api.complete(order.latest_payment().provider_ref, payment_status="unpaid")
    response = post_event(client, event_body(session, "checkout.session.async_payment_failed"))
    assert response.status_code == 200 and refreshed(order).status == "failed"
    page = client.get(f"/orders/{order.public_id}").get_data(as_text=True)
    assert "No money was taken" in page


def test_expired_session_expires_the_order(app, client, checkout_api):
    order = stripe_order(client, country="TH")
    session = checkout_api.update(order.latest_payment().provider_ref, status="expired")
    response = post_event(client, event_body(session, "checkout.session.expired"))
    assert response.status_code == 200 and refreshed(order).status == "expired"


def test_an_amount_that_does_not_match_needs_attention(app, client, checkout_api):
    order = stripe_order(client, country="PH")
    session = checkout_api.complete(order.latest_payment().provider_ref,
                                    amount_total=order.amount - 100)
    assert post_event(client, event_body(session)).status_code == 200
    assert refreshed(order).status == "needs_attention"
    assert Delivery.select().count() == 0
    message = OrderEvent.select().where(OrderEvent.to_status == "needs_attention").get().message
    assert f"expected {order.amount} PHP" in message


def test_another_currency_needs_attention(app, client, checkout_api):
    order = stripe_order(client, country="US")
    session = checkout_api.complete(order.latest_payment().provider_ref, currency="eur")
    post_event(client, event_body(session))
    assert refreshed(order).status == "needs_attention"


def test_other_event_types_are_acknowledged_and_ignored(app, client, checkout_api):
    order = stripe_order(client)
    body = json.dumps({"id": "evt_123abc", "object": "event", "type": "payment_intent.succeeded",
                       "created": int(time.time()),
                       "data": {"object": {"id": "pi_123", "object": "payment_intent"}}}).encode()
    response = post_event(client, body)
    assert response.status_code == 200 and response.json["outcomes"] == []
    assert refreshed(order).status == "awaiting_payment" and checkout_api.retrieved == []


def test_a_session_that_is_not_ours_is_a_404(app, client, checkout_api):
    other = checkout_api.create({
        "mode": "payment", "success_url": "https://elsewhere.example/done",
        "line_items[0][price_data][currency]": "usd", "line_items[0][price_data][unit_amount]": "500",
        "line_items[0][price_data][product_data][name]": "x", "line_items[0][quantity]": "1"},
        None)[1]
    response = post_event(client, event_body(checkout_api.complete(other["id"])))
    assert response.status_code == 404


def test_a_signed_but_malformed_event_is_rejected(app, client):
    for body in (b"not json", b'{"id": "evt_1", "type": "checkout.session.completed"}',
                 json.dumps({"id": "evt_1", "object": "event", "type": "checkout.session.completed",
                             "data": {"object": {"id": "../../v1/charges"}}}).encode()):
        assert post_event(client, body).status_code == 400, body


def test_localstripes_own_signed_webhooks_are_accepted(app, client, localstripe, live_server):
    """A second, independent signer: localstripe signs its payment_intent events;
    we verify them and acknowledge them (they are not Checkout events)."""
    stripe_order(client)
    with app.app_context():
        received = WebhookEvent.select().count()
    config = urllib.parse.urlencode({"url": live_server.url + "/webhooks/stripe",
                                     "secret": WEBHOOK_SECRET}).encode()
    hook_id = "topup" + secrets.token_hex(4)
    urllib.request.urlopen(urllib.request.Request(
        f"{localstripe}/_config/webhooks/{hook_id}", data=config, method="POST"), timeout=10).close()
    client_ = stripe.StripeClient(SECRET_KEY, base_addresses={"api": localstripe})
    calls = []
    original = StripeCheckout.parse_webhook

    def spy(self, request):
        events = original(self, request)
        calls.append(events)
        return events

    try:
        StripeCheckout.parse_webhook = spy
        client_.v1.payment_intents.create(params={
            "amount": 938, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
            "payment_method_types": ["card"]})
        wait_for(lambda: calls)
    finally:
        StripeCheckout.parse_webhook = original
        urllib.request.urlopen(urllib.request.Request(
            f"{localstripe}/_config/webhooks/{hook_id}",
            data=urllib.parse.urlencode({"url": "http://127.0.0.1:9/", "secret": "whsec_x",
                                         "events[]": "none.none"}).encode(),
            method="POST"), timeout=10).close()
    assert calls[0] == []  # verified, then acknowledged with no events
    assert WebhookEvent.select().count() == received


# --- fetch_status and refund -----------------------------------------------------------------


def test_fetch_status_heals_a_missed_webhook(app, client, checkout_api, provider):
    order = stripe_order(client, country="IN")
    payment = order.latest_payment()
    with app.app_context():
        assert provider.fetch_status(payment) is None  # still open
    checkout_api.complete(payment.provider_ref)
    with app.app_context():
        event = provider.fetch_status(payment)
        assert event == PaymentEvent(event_id=f"{payment.provider_ref}:succeeded", kind="succeeded",
                                     payment_ref=payment.provider_ref, amount=order.total)
        assert orders.apply_payment_event("stripe", event) == "applied"
        assert orders.apply_payment_event("stripe", provider.fetch_status(payment)) == "duplicate"
    assert refreshed(order).status == "paid"
    # the webhook arriving late changes nothing either
    late = post_event(client, event_body(checkout_api.sessions[payment.provider_ref]))
    assert late.json["outcomes"] == ["ignored"]
    assert Delivery.select().count() == 1


def test_fetch_status_sees_expiry(app, client, checkout_api, provider):
    order = stripe_order(client)
    payment = order.latest_payment()
    checkout_api.update(payment.provider_ref, status="expired")
    with app.app_context():
        event = provider.fetch_status(payment)
        assert event.kind == "expired" and event.event_id == f"{payment.provider_ref}:expired"
        orders.apply_payment_event("stripe", event)
    assert refreshed(order).status == "expired"


def test_refund_through_localstripe(app, client, checkout_api, provider):
    order = stripe_order(client)
    payment = order.latest_payment()
    # the buyer pays: a real PaymentIntent, confirmed by localstripe (through the same api_base)
    sdk = stripe.StripeClient(SECRET_KEY, base_addresses={"api": checkout_api.url})
    intent = sdk.v1.payment_intents.create(params={
        "amount": order.amount, "currency": "usd", "payment_method": "pm_card_visa",
        "confirm": True, "payment_method_types": ["card"]})
    assert intent.status == "succeeded"
    session = checkout_api.complete(payment.provider_ref, payment_intent=intent.id)
    post_event(client, event_body(session))
    assert refreshed(order).status == "paid"

    with app.app_context():
        event = provider.refund(Payment.get_by_id(payment.id))
        assert event.kind == "refunded" and event.payment_ref == payment.provider_ref
        assert event.amount == order.total and event.event_id.startswith("re_")
        assert orders.apply_payment_event("stripe", event) == "applied"
    assert refreshed(order).status == "refunded"
    refunds = sdk.v1.refunds.list(params={"payment_intent": intent.id}).data
    assert [r.amount for r in refunds] == [order.amount]


def test_refund_of_an_unpaid_session_is_refused(app, client, checkout_api, provider):
    order = stripe_order(client)
    with app.app_context(), pytest.raises(ValueError, match="no paid payment"):
        provider.refund(order.latest_payment())
    assert provider.supports_refund
