"""Xendit e-wallets against a local fake of Xendit's e-wallet charges API
(request/response shapes and error codes as documented: Basic auth with the
secret key, 400 API_VALIDATION_ERROR, 401 INVALID_API_KEY, 404 DATA_NOT_FOUND,
409 DUPLICATE_PAYMENT_REQUEST_ERROR, 5xx; callbacks with x-callback-token)."""
from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from topup import create_app, orders
from topup.models import Order
from topup.money import Money
from topup.payments import NotConfigured
from topup_plugins.qr.common import order_reference
from topup_plugins.xendit.client import XenditUnavailable, api_amount, dumps, money_from_api
from topup_plugins.xendit.ewallet import WALLETS, XenditEWallet

from tests.conftest import buy

SECRET = "xnd_development_" + "S3cr3t" * 6
TOKEN = "cb_token_" + "t" * 30
ACTIONS = {  # per Xendit's "eWallet Checkout Methods" table
    "ID_DANA": ("desktop", "mobile"), "ID_SHOPEEPAY": ("deeplink",),
    "PH_GCASH": ("desktop", "mobile"), "PH_GRABPAY": ("desktop", "deeplink"),
}


class FakeXendit:
    """Xendit's e-wallet charges API, the parts we use."""

    def __init__(self):
        self.charges: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.mode = "normal"  # normal | 500 | timeout
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body):
                raw = json.dumps(body, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _handle(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw, parse_float=Decimal) if raw else None
                fake.requests.append((method, self.path, body))
                if fake.mode == "timeout":
                    time.sleep(1.5)
                    return self._send(200, {})
                if fake.mode == "500":
                    return self._send(500, {"error_code": "SERVER_ERROR",
                                            "message": "An unexpected error occured"})
                expected = "Basic " + base64.b64encode(f"{SECRET}:".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    return self._send(401, {"error_code": "INVALID_API_KEY",
                                            "message": "API key format is invalid"})
                status, answer = fake.route(method, self.path, body)
                self._send(status, answer)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the client gave up on a deliberately slow answer: expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def route(self, method, path, body):
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["ewallets", "charges"]:
            return self.create(body)
        if parts[:2] == ["ewallets", "charges"] and len(parts) >= 3:
            charge = self.charges.get(parts[2])
            if charge is None:
                return 404, {"error_code": "DATA_NOT_FOUND", "message": "Charge not found"}
            if method == "GET" and len(parts) == 3:
                return 200, charge
            if method == "POST" and parts[3:] == ["refunds"]:
                if charge["status"] != "SUCCEEDED":
                    return 400, {"error_code": "INELIGIBLE_TRANSACTION",
                                 "message": "only succeeded charges can be refunded"}
                amount = (body or {}).get("amount", charge["capture_amount"])
                charge["refunded_amount"] = (charge["refunded_amount"] or 0) + amount
                return 200, {"id": "ewr_" + uuid.uuid4().hex, "charge_id": charge["id"],
                             "status": "SUCCEEDED", "currency": charge["currency"],
                             "refund_amount": amount, "reason": body.get("reason")}
        return 404, {"error_code": "NOT_FOUND", "message": "no such endpoint"}

    def create(self, body):
        def invalid(message):
            return 400, {"error_code": "API_VALIDATION_ERROR", "message": message}

        if not isinstance(body, dict):
            return invalid("body must be a JSON object")
        for field in ("reference_id", "currency", "amount", "checkout_method", "channel_code"):
            if field not in body:
                return invalid(f"{field} is required")
        amount = body["amount"]
        if isinstance(amount, bool) or not isinstance(amount, (int, Decimal)) or amount <= 0:
            return invalid("amount must be a positive number")
        if body["currency"] in ("IDR", "VND") and amount != int(amount):
            return invalid("amount must be an integer for IDR")
        if body["checkout_method"] != "ONE_TIME_PAYMENT":
            return invalid("checkout_method must be ONE_TIME_PAYMENT")
        if body["channel_code"] == "ID_OVO" or body["channel_code"] not in {
                w.channel_code for w in WALLETS}:
            return invalid("channel_code is invalid")
        if not (body.get("channel_properties") or {}).get("success_redirect_url"):
            return invalid("channel_properties.success_redirect_url is required")
        if any(c["reference_id"] == body["reference_id"] for c in self.charges.values()):
            return 409, {"error_code": "DUPLICATE_PAYMENT_REQUEST_ERROR",
                         "message": "There is already a payment with the same reference_id"}
        charge_id = f"ewc_{uuid.uuid4()}"
        kinds = ACTIONS.get(body["channel_code"], ("desktop", "mobile"))
        base = f"https://ewallet-mock-connector.xendit.co/checkouts?token={charge_id}"
        self.charges[charge_id] = {
            "id": charge_id, "business_id": "5abe2389ewpejrt238",
            "reference_id": body["reference_id"], "status": "PENDING",
            "currency": body["currency"], "charge_amount": amount, "capture_amount": None,
            "refunded_amount": None, "checkout_method": "ONE_TIME_PAYMENT",
            "channel_code": body["channel_code"],
            "channel_properties": body["channel_properties"],
            "actions": {"desktop_web_checkout_url": base + "&d=1" if "desktop" in kinds else None,
                        "mobile_web_checkout_url": base + "&m=1" if "mobile" in kinds else None,
                        "mobile_deeplink_checkout_url":
                            "https://deeplink.example/pay" if "deeplink" in kinds else None,
                        "qr_checkout_string": None},
            "is_redirect_required": True, "callback_url": "https://shop.example/xendit/callback",
            "created": "2024-01-01T00:00:00Z", "updated": "2024-01-01T00:00:00Z",
            "void_status": None, "voided_at": None, "capture_now": True,
            "failure_code": None, "metadata": None,
        }
        return 202, self.charges[charge_id]

    def settle(self, charge_id, status, amount=None):
        charge = self.charges[charge_id]
        charge["status"] = status
        if status == "SUCCEEDED":
            charge["capture_amount"] = charge["charge_amount"] if amount is None else amount
        if status == "FAILED":
            charge["failure_code"] = "USER_DECLINED_THE_TRANSACTION"


@pytest.fixture
def xendit():
    fake = FakeXendit()
    yield fake
    fake.stop()


@pytest.fixture
def config(config, xendit):
    config["PLUGINS"] = {**config["PLUGINS"], "xendit": {
        "secret_key": SECRET, "callback_token": TOKEN, "api_base": xendit.url, "timeout": 0.5}}
    return config


def settings(xendit, **extra):
    return {"secret_key": SECRET, "callback_token": TOKEN, "api_base": xendit.url,
            "timeout": 0.5, **extra}


def place(client, country="ID", method="xendit_dana") -> Order:
    response = buy(client, country=country, method=method)
    assert response.status_code == 303, response.get_data(as_text=True)
    return Order.get(Order.public_id == response.headers["Location"].rsplit("/", 1)[1])


def callback(order_or_charge, status="SUCCEEDED", **data) -> bytes:
    charge_id = (order_or_charge if isinstance(order_or_charge, str)
                 else order_or_charge.latest_payment().provider_ref)
    return json.dumps({
        "event": "ewallet.capture", "business_id": "5abe2389ewpejrt238",
        "created": "2024-01-01T00:00:10Z",
        "data": {"id": charge_id, "reference_id": "x", "status": status, "currency": "IDR",
                 "charge_amount": 15000, "capture_amount": 15000, "channel_code": "ID_DANA",
                 **data}}).encode()


def post(client, body, token=TOKEN, path="/webhooks/xendit_dana"):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["x-callback-token"] = token
    return client.post(path, data=body, headers=headers)


def status(order) -> str:
    return Order.get_by_id(order.id).status


# --- amounts and the client ----------------------------------------------------------


def test_amounts_are_whole_rupiah_and_exact():
    assert api_amount(Money(1_500_000, "IDR")) == 15000
    assert dumps({"amount": api_amount(Money(1_500_000, "IDR"))}) == b'{"amount": 15000}'
    assert dumps({"amount": api_amount(Money(5450, "PHP"))}) == b'{"amount": 54.5}'
    assert api_amount(Money(25000, "VND")) == 25000
    with pytest.raises(ValueError):
        api_amount(Money(1_500_050, "IDR"))  # Rp 15,000.50
    assert money_from_api(15000, "IDR") == Money(1_500_000, "IDR")
    assert money_from_api(Decimal("54.50"), "PHP") == Money(5450, "PHP")
    for wrong in (1.5, "15000", True, None):
        with pytest.raises(ValueError):
            money_from_api(wrong, "IDR")


def test_not_configured_without_keys(xendit):
    dana = next(w for w in WALLETS if w.id == "xendit_dana")
    for missing in ({}, {"secret_key": SECRET}, {"callback_token": TOKEN},
                    {"secret_key": " ", "callback_token": TOKEN}):
        with pytest.raises(NotConfigured):
            dana(missing)
    with pytest.raises(NotConfigured):
        dana(settings(xendit, channels=["PH_GCASH"]))
    assert dana(settings(xendit, channels=["ID_DANA"])).channel_code == "ID_DANA"
    assert dana(settings(xendit, channels=["xendit_dana"]))
    assert "S3cr3t" not in repr(dana(settings(xendit)).client)


def test_an_unconfigured_install_offers_no_xendit(config, tmp_path, monkeypatch):
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path))
    config["PLUGINS"] = {"sandbox_payment": config["PLUGINS"]["sandbox_payment"]}
    registry = create_app(config).extensions["topup"]
    assert {w.id for w in WALLETS} <= set(registry.not_configured)
    assert not any(isinstance(p, XenditEWallet) for p in registry.providers.values())
    assert "xendit" not in registry.errors


def test_channels_setting_enables_a_subset(config, tmp_path, monkeypatch):
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path))
    config["PLUGINS"]["xendit"]["channels"] = ["xendit_dana", "PH_GCASH"]
    registry = create_app(config).extensions["topup"]
    assert sorted(p.id for p in registry.providers.values()
                  if isinstance(p, XenditEWallet)) == ["xendit_dana", "xendit_gcash"]


def test_wallets_are_offered_only_in_their_country_and_currency(app, client):
    registry = app.extensions["topup"]
    ids = lambda country, currency, amount=None: {  # noqa: E731
        p.id for p in registry.payment_methods(country, currency, amount)
        if isinstance(p, XenditEWallet)}
    assert ids("ID", "IDR") == {"xendit_dana", "xendit_shopeepay", "xendit_linkaja",
                                "xendit_astrapay"}
    assert ids("PH", "PHP") == {"xendit_gcash", "xendit_grabpay_ph", "xendit_paymaya",
                                "xendit_shopeepay_ph"}
    assert "xendit_truemoney" in ids("TH", "THB") and "xendit_momo" in ids("VN", "VND")
    assert ids("US", "USD") == set() and ids("ID", "USD") == set() and ids("BR", "BRL") == set()
    assert "xendit_ovo" not in registry.providers  # OVO needs a phone number we do not collect
    assert "xendit_dana" not in ids("ID", "IDR", Money(20_000_001_00, "IDR"))  # over DANA's max
    assert "xendit_dana" not in ids("ID", "IDR", Money(1_500_050, "IDR"))  # not whole rupiah
    assert "xendit_dana" not in ids("ID", "IDR", Money(99_00, "IDR"))  # under Rp 100
    for country, present in (("ID", True), ("PH", False), ("US", False)):
        page = client.get(f"/tiktok-coins?country={country}").get_data(as_text=True)
        assert ('value="xendit_dana"' in page) == present
        assert ('value="xendit_gcash"' in page) == (country == "PH")


# --- start --------------------------------------------------------------------------


def test_start_redirects_to_the_wallet_with_the_amount_in_whole_rupiah(app, client, xendit):
    order = place(client)
    payment = order.latest_payment()
    method, path, body = xendit.requests[-1]
    assert (method, path) == ("POST", "/ewallets/charges")
    assert body["amount"] == order.amount // 100 and isinstance(body["amount"], int)
    assert body["currency"] == "IDR" and body["channel_code"] == "ID_DANA"
    assert body["checkout_method"] == "ONE_TIME_PAYMENT"
    assert body["reference_id"] == order_reference(order) != order.public_id
    assert order.public_id not in json.dumps(body["reference_id"])
    assert body["channel_properties"]["success_redirect_url"].endswith(f"/orders/{order.public_id}")
    charge = xendit.charges[payment.provider_ref]
    assert payment.status == "started" and payment.provider_ref.startswith("ewc_")
    assert payment.action["kind"] == "redirect"
    assert payment.action["url"] == charge["actions"]["mobile_web_checkout_url"]
    page = client.get(f"/orders/{order.public_id}").get_data(as_text=True)
    assert f'href="{charge["actions"]["mobile_web_checkout_url"].replace("&", "&amp;")}"' in page


def test_start_in_pesos_and_deeplink_fallback(app, client, xendit):
    order = place(client, country="PH", method="xendit_gcash")
    _, _, body = xendit.requests[-1]
    assert body["currency"] == "PHP" and body["amount"] == order.amount // 100
    assert body["channel_code"] == "PH_GCASH"
    shopee = place(client, country="ID", method="xendit_shopeepay")
    assert shopee.latest_payment().action["url"] == "https://deeplink.example/pay"


def test_duplicate_reference_is_refused_by_the_api(app, xendit):
    provider = app.extensions["topup"].providers["xendit_dana"]

    class Fake:
        public_id, amount, currency = "pub-1", 1_500_000, "IDR"

    provider.start(Fake(), "https://shop.example/orders/pub-1")
    with pytest.raises(Exception, match="409 DUPLICATE_PAYMENT_REQUEST_ERROR"):
        provider.start(Fake(), "https://shop.example/orders/pub-1")


def test_wrong_key_is_an_error_not_a_payment(app, xendit):
    provider = XenditEWallet.__subclasses__()[0](settings(xendit, secret_key="xnd_wrong"))

    class Fake:
        public_id, amount, currency = "pub-2", 1_500_000, "IDR"

    with pytest.raises(Exception, match="401 INVALID_API_KEY"):
        provider.start(Fake(), "https://shop.example/orders/pub-2")


@pytest.mark.parametrize("mode", ["500", "timeout"])
def test_api_down_during_start_tells_the_buyer_to_choose_another(app, client, xendit, mode,
                                                                caplog):
    xendit.mode = mode
    caplog.set_level(logging.DEBUG)
    response = buy(client, country="ID", method="xendit_dana")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "DANA is not working right now" in page and "choose another payment method" in page
    order = Order.select().order_by(Order.id.desc()).first()
    assert order.status == "failed" and order.latest_payment().status == "failed"
    assert SECRET not in caplog.text and "S3cr3t" not in caplog.text
    assert SECRET not in (order.latest_payment().error or "")
    assert base64.b64encode(f"{SECRET}:".encode()).decode() not in caplog.text


# --- callbacks ----------------------------------------------------------------------


def test_valid_callback_pays_and_a_replay_changes_nothing(app, client, xendit):
    order = place(client)
    xendit.settle(order.latest_payment().provider_ref, "SUCCEEDED")
    body = callback(order)
    response = post(client, body)
    assert response.status_code == 200 and response.get_json()["outcomes"] == ["applied"]
    assert status(order) == "paid"
    assert xendit.requests[-1][:2] == ("GET", f"/ewallets/charges/{order.latest_payment().provider_ref}")
    replay = post(client, body)
    assert replay.status_code == 200 and replay.get_json()["outcomes"] == ["duplicate"]
    assert status(order) == "paid"


@pytest.mark.parametrize("token", [None, "", "wrong-token", TOKEN + "x", TOKEN[:-1]])
def test_wrong_or_missing_token_is_rejected_before_anything(app, client, xendit, token):
    order = place(client)
    xendit.settle(order.latest_payment().provider_ref, "SUCCEEDED")
    before = len(xendit.requests)
    for path in ("/webhooks/xendit_dana", "/xendit/callback"):
        response = post(client, callback(order), token=token, path=path)
        assert response.status_code == 400
    assert len(xendit.requests) == before  # not even a re-fetch
    assert status(order) == "awaiting_payment"


def test_callback_claiming_success_while_the_api_says_pending_pays_nothing(app, client, xendit):
    order = place(client)
    response = post(client, callback(order, "SUCCEEDED"))
    assert response.status_code == 200
    assert status(order) == "awaiting_payment"
    assert order.latest_payment().status in ("started", "pending")
    xendit.settle(order.latest_payment().provider_ref, "SUCCEEDED")  # now it really is
    assert post(client, callback(order, "SUCCEEDED")).get_json()["outcomes"] == ["applied"]
    assert status(order) == "paid"


def test_failed_charge_fails_the_order(app, client, xendit):
    order = place(client)
    xendit.settle(order.latest_payment().provider_ref, "FAILED")
    assert post(client, callback(order, "FAILED")).status_code == 200
    assert status(order) == "failed"


def test_amount_mismatch_needs_attention(app, client, xendit):
    order = place(client)
    xendit.settle(order.latest_payment().provider_ref, "SUCCEEDED", amount=1000)
    assert post(client, callback(order)).status_code == 200  # the body's amount is ignored
    assert status(order) == "needs_attention"


def test_unknown_charge_is_rejected_and_api_outage_asks_for_a_retry(app, client, xendit):
    assert post(client, callback("ewc_00000000-0000-0000-0000-000000000000")).status_code == 400
    order = place(client)
    xendit.settle(order.latest_payment().provider_ref, "SUCCEEDED")
    xendit.mode = "500"
    assert post(client, callback(order)).status_code == 503
    assert status(order) == "awaiting_payment"
    xendit.mode = "normal"
    assert post(client, callback(order)).status_code == 200 and status(order) == "paid"


def test_malformed_callbacks_are_rejected(app, client, xendit):
    for body in (b"not json", b"[]", b'{"event": "ewallet.capture"}',
                 b'{"event": "ewallet.capture", "data": {"id": "../../etc"}}'):
        assert post(client, body).status_code == 400


def test_the_shared_callback_url_routes_each_wallet(app, client, xendit):
    dana, gcash = place(client), place(client, country="PH", method="xendit_gcash")
    for order in (dana, gcash):
        xendit.settle(order.latest_payment().provider_ref, "SUCCEEDED")
    gcash_body = callback(gcash, channel_code="PH_GCASH", currency="PHP")
    # the wrong wallet's endpoint refuses (the re-fetched charge is GCash's)
    assert post(client, gcash_body, path="/webhooks/xendit_dana").status_code == 400
    assert post(client, gcash_body, path="/xendit/callback").status_code == 200
    assert post(client, callback(dana), path="/xendit/callback").status_code == 200
    assert status(dana) == "paid" and status(gcash) == "paid"


# --- fetch_status and refund --------------------------------------------------------


def test_fetch_status_heals_a_missed_callback(app, client, xendit):
    order = place(client)
    provider = app.extensions["topup"].providers["xendit_dana"]
    with app.app_context():
        assert provider.fetch_status(order.latest_payment()) is None  # still pending
        xendit.settle(order.latest_payment().provider_ref, "SUCCEEDED")
        event = provider.fetch_status(order.latest_payment())
        assert event.kind == "succeeded" and event.amount == order.total
        assert orders.apply_payment_event(provider.id, event) == "applied"
    assert status(order) == "paid"
    # the late callback then changes nothing
    assert post(client, callback(order)).get_json()["outcomes"] in (["duplicate"], ["ignored"])


def test_refund(app, client, xendit):
    order = place(client)
    charge_id = order.latest_payment().provider_ref
    xendit.settle(charge_id, "SUCCEEDED")
    post(client, callback(order))
    provider = app.extensions["topup"].providers["xendit_dana"]
    assert provider.supports_refund
    with app.app_context():
        payment = order.latest_payment()
        event = provider.refund(payment)
        assert event.kind == "refunded" and event.payment_ref == charge_id
        assert orders.apply_payment_event(provider.id, event) == "applied"
    method, path, body = xendit.requests[-1]
    assert (method, path) == ("POST", f"/ewallets/charges/{charge_id}/refunds")
    assert body["amount"] == order.amount // 100
    assert status(order) == "refunded"
    assert xendit.charges[charge_id]["refunded_amount"] == order.amount // 100
    with app.app_context():  # and a re-fetch agrees
        assert provider.fetch_status(order.latest_payment()).kind == "refunded"


def test_timeout_is_unavailable_and_quiet_about_the_key(xendit):
    provider = next(w for w in WALLETS if w.id == "xendit_gcash")(settings(xendit))
    xendit.mode = "timeout"
    with pytest.raises(XenditUnavailable) as raised:
        provider.client.get_charge("ewc_x")
    assert "S3cr3t" not in str(raised.value) and SECRET not in repr(raised.value)
