"""The operator webhook delivery backend against a real receiver on loopback
(an http.server thread that checks every signature with topup.signing.verify),
and its signed callback endpoint."""
from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from topup import ROOT, create_app, orders, worker
from topup.models import Delivery, Order, OrderEvent, Product, utcnow
from topup.signing import SignatureError, sign, verify
from topup_plugins.operator_webhook.backend import OperatorWebhook
from topup_plugins.operator_webhook.model import OperatorWebhookResult

from tests.conftest import place_order, wait_for
from tests.conftest import pay

SECRET = "owh_signing_" + "k" * 28
CALLBACK_SECRET = "owh_callback_" + "c" * 27
PATH = "/operator-webhook/callback"


class Receiver:
    """The operator's fulfilment system: verifies each request's signature,
    records it, and answers from a script of (status, body, headers); "hang"
    holds the answer until the test ends (a timeout)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    verify(SECRET, raw, self.headers.get("Topup-Signature"))
                    signed = True
                except SignatureError:
                    signed = False
                receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "raw": raw, "signed": signed})
                answer = receiver.script.pop(0) if receiver.script else (
                    200, {"reference": "OP-1"}, {})
                if answer == "hang":
                    receiver.release.wait(10)
                    return
                status, body, headers = answer
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the client gave up on a hung answer: expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/deliveries"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def answer(self, *answers):
        self.script.extend(a if a == "hang" or len(a) == 3 else (*a, {}) for a in answers)

    def bodies(self) -> list[dict]:
        return [json.loads(r["raw"]) for r in self.requests]

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    fake = Receiver()
    yield fake
    fake.stop()


@pytest.fixture
def config(config, receiver, monkeypatch):
    monkeypatch.setenv("OPERATOR_WEBHOOK_SECRET", SECRET)
    config["PLUGINS"]["operator_webhook"] = {"url": receiver.url,
                                             "secret": {"$env": "OPERATOR_WEBHOOK_SECRET"},
                                             "callback_secret": CALLBACK_SECRET,
                                             "timeout_seconds": 0.5}
    config["DELIVERY_CHECK_MIN_SECONDS"] = 3600  # a waiting delivery moves only when woken
    return config


@pytest.fixture
def paid(app, client):
    """A paid order for the operator webhook backend."""
    with app.app_context():
        Product.update(delivery_backend="operator_webhook").execute()
        order = place_order(client, account="@maria.fan")
    pay(app, order)
    return order


def status(order) -> str:
    return Order.get_by_id(order.id).status


def delivery_of(order) -> Delivery:
    return Delivery.get(Delivery.order == order.id)


def callback_headers(body: bytes, secret=CALLBACK_SECRET, timestamp=None) -> dict:
    return {"Content-Type": "application/json", "Topup-Signature": sign(secret, body, timestamp)}


def post_callback(client, body, secret=CALLBACK_SECRET, timestamp=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(PATH, data=raw, headers=callback_headers(raw, secret, timestamp))


# --- the request -------------------------------------------------------------------


def test_200_with_a_reference_delivers_with_it(app, paid, receiver):
    app.config["PUBLIC_URL"] = "https://coins.example.com/"
    receiver.answer((200, {"reference": "OP-7781"}))
    assert worker.deliver_once(app) is True

    assert status(paid) == orders.DELIVERED
    assert (delivery_of(paid).status, delivery_of(paid).reference) == ("done", "OP-7781")
    [request] = receiver.requests
    assert request["signed"] and request["path"] == "/deliveries"
    headers = request["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == paid.public_id
    assert headers["User-Agent"].startswith("topup/")
    body = json.loads(request["raw"])
    paid_at = body["order"].pop("paid_at")
    assert body == {
        "type": "delivery.requested", "id": paid.public_id,
        "order": {"id": paid.public_id, "product": "tiktok-coins", "quantity": 70,
                  "unit": "coins", "account_id": "maria.fan", "account_nickname": None,
                  "country": "US", "currency": "USD", "amount": paid.amount},
        "callback_url": "https://coins.example.com/operator-webhook/callback"}
    assert isinstance(body["order"]["amount"], int) and paid.amount > 0
    assert len(paid_at) == 20 and paid_at.endswith("Z")


def test_500_then_200_sends_the_same_body_and_key_twice(app, paid, receiver):
    receiver.answer((500, {"error": "database down"}), (201, {"reference": "OP-2"}))
    assert worker.deliver_once(app) is True
    delivery = delivery_of(paid)
    assert (delivery.status, delivery.last_error) == ("pending", "answered 500")
    assert status(paid) == orders.DELIVERING

    time.sleep(1.1)  # a new signature timestamp, the same body
    assert worker.deliver_once(app) is True
    assert status(paid) == orders.DELIVERED
    assert delivery_of(paid).reference == "OP-2"
    first, second = receiver.requests
    assert first["raw"] == second["raw"] and first["signed"] and second["signed"]
    assert first["headers"]["Topup-Signature"] != second["headers"]["Topup-Signature"]
    assert [r["headers"]["Idempotency-Key"] for r in receiver.requests] == [paid.public_id] * 2


def test_no_answer_in_time_is_retried(app, paid, receiver):
    receiver.answer("hang")
    started = time.monotonic()
    assert worker.deliver_once(app) is True
    assert time.monotonic() - started < 5
    delivery = delivery_of(paid)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert delivery.last_error == "no answer within 0.5 s"
    assert status(paid) == orders.DELIVERING


@pytest.mark.parametrize("answer, error", [
    ((429, {}, {"Retry-After": "30"}),
     "answered 429 (Retry-After 30; topup retries with its own backoff)"),
    ((408, {}), "answered 408"),
    ((425, {}), "answered 425"),
    ((503, b"<html>maintenance</html>"), "answered 503"),
])
def test_busy_and_server_errors_are_retried(app, paid, receiver, answer, error):
    receiver.answer(answer)
    worker.deliver_once(app)
    assert (delivery_of(paid).status, delivery_of(paid).last_error) == ("pending", error)


def test_a_receiver_that_is_down_is_retried(app, paid, receiver):
    receiver.stop()
    worker.deliver_once(app)
    delivery = delivery_of(paid)
    assert delivery.status == "pending"
    assert delivery.last_error == "could not connect (ConnectionRefusedError)"


@pytest.mark.parametrize("answer", [
    (200, {}), (200, b"OK"), (200, {"reference": ""}), (200, {"reference": "   "}),
    (200, {"reference": "x" * 101}), (200, {"reference": "OP\n1"}), (200, {"reference": 42}),
    (200, ["OP-1"]),
])
def test_2xx_without_a_valid_reference_is_retried(app, paid, receiver, answer):
    receiver.answer(answer)
    worker.deliver_once(app)
    delivery = delivery_of(paid)
    assert (delivery.status, delivery.last_error) == ("pending",
                                                      "answered 200 without a reference")
    assert status(paid) == orders.DELIVERING


def test_204_is_retried_too(app, paid, receiver):
    receiver.answer((204, b""))
    worker.deliver_once(app)
    assert delivery_of(paid).last_error == "answered 204 without a reference"


def test_422_needs_attention_with_the_body_as_the_reason(app, paid, receiver):
    problem = "account maria.fan is banned from receiving coins; " + "details " * 40
    receiver.answer((422, {"error": problem}))
    worker.deliver_once(app)

    assert status(paid) == orders.NEEDS_ATTENTION
    delivery = delivery_of(paid)
    assert delivery.status == "failed"
    assert delivery.last_error.startswith('answered 422: {"error": "account maria.fan is banned')
    assert len(delivery.last_error) == len("answered 422: ") + 200
    event = OrderEvent.select().where(OrderEvent.order == paid.id,
                                      OrderEvent.to_status == orders.NEEDS_ATTENTION).get()
    assert "answered 422" in event.message and "is banned" in event.message


def test_a_redirect_is_not_followed_and_fails(app, paid, receiver):
    elsewhere = receiver.url.replace("/deliveries", "/elsewhere")
    receiver.answer((302, b"", {"Location": elsewhere}))
    worker.deliver_once(app)

    assert len(receiver.requests) == 1  # never POSTed to the Location
    assert status(paid) == orders.NEEDS_ATTENTION
    assert delivery_of(paid).last_error.startswith("answered 302, a redirect")


# --- 202 and the callback ---------------------------------------------------------------


def test_202_then_a_signed_callback_wakes_the_worker_to_deliver(app, paid, receiver,
                                                                 live_server):
    receiver.answer((202, {}))
    wait_for(lambda: delivery_of(paid).status == "waiting")
    assert status(paid) == orders.DELIVERING
    [body] = receiver.bodies()
    assert body["callback_url"] == live_server.url + PATH  # INTERNAL_URL without PUBLIC_URL

    raw = json.dumps({"id": paid.public_id, "status": "delivered",
                      "reference": "OP-LATE-9"}).encode()
    request = urllib.request.Request(body["callback_url"], data=raw, method="POST",
                                     headers=callback_headers(raw))
    with urllib.request.urlopen(request, timeout=5) as response:
        assert (response.status, json.load(response)) == (200, {"ok": True})

    wait_for(lambda: status(paid) == orders.DELIVERED)  # long before the hour-long check
    assert delivery_of(paid).reference == "OP-LATE-9"
    assert len(receiver.requests) == 1


def test_202_then_a_failed_callback_needs_attention_with_its_message(app, client, paid,
                                                                     receiver):
    receiver.answer((202, {}))
    worker.deliver_once(app)
    assert delivery_of(paid).status == "waiting"
    assert worker.deliver_once(app) is False  # not due for an hour

    response = post_callback(client, {"id": paid.public_id, "status": "failed",
                                      "message": "Out of\nstock for coins"})
    assert (response.status_code, response.get_json()) == (200, {"ok": True})
    assert worker.deliver_once(app) is True  # woken
    assert status(paid) == orders.NEEDS_ATTENTION
    delivery = delivery_of(paid)
    assert (delivery.status, delivery.last_error) == ("failed",
                                                     "reported failed: Out of stock for coins")
    event = OrderEvent.select().where(OrderEvent.order == paid.id,
                                      OrderEvent.to_status == orders.NEEDS_ATTENTION).get()
    assert "Out of stock for coins" in event.message


def test_an_operator_retry_after_a_failed_callback_asks_again(app, client, paid, receiver):
    receiver.answer((202, {}), (202, {}))
    worker.deliver_once(app)
    post_callback(client, {"id": paid.public_id, "status": "failed", "message": "no stock"})
    worker.deliver_once(app)
    assert status(paid) == orders.NEEDS_ATTENTION

    with app.app_context():
        orders.retry_delivery(Order.get_by_id(paid.id), actor="admin")
    worker.deliver_once(app)
    first, second = receiver.requests
    assert first["raw"] == second["raw"]
    assert delivery_of(paid).status == "waiting"
    Delivery.update(next_attempt_at=utcnow()).execute()  # the hour passes: a routine check
    assert worker.deliver_once(app) is True
    assert delivery_of(paid).status == "waiting"  # the old "failed" does not answer for it
    assert status(paid) == orders.DELIVERING

    post_callback(client, {"id": paid.public_id, "status": "delivered", "reference": "OP-3"})
    worker.deliver_once(app)
    assert status(paid) == orders.DELIVERED and delivery_of(paid).reference == "OP-3"


def test_a_callback_between_retries_is_used_without_asking_again(app, client, paid, receiver):
    receiver.answer((503, {}))
    worker.deliver_once(app)
    assert delivery_of(paid).status == "pending"
    response = post_callback(client, {"id": paid.public_id, "status": "delivered",
                                      "reference": "OP-4"})
    assert response.status_code == 200
    worker.deliver_once(app)
    assert status(paid) == orders.DELIVERED and delivery_of(paid).reference == "OP-4"
    assert len(receiver.requests) == 1


def test_a_duplicate_callback_is_harmless(app, client, paid, receiver):
    receiver.answer((202, {}))
    worker.deliver_once(app)
    body = {"id": paid.public_id, "status": "delivered", "reference": "OP-5"}
    assert post_callback(client, body).status_code == 200
    worker.deliver_once(app)
    assert post_callback(client, body).status_code == 200
    assert worker.deliver_once(app) is False
    assert status(paid) == orders.DELIVERED
    assert OperatorWebhookResult.select().count() == 1
    assert OrderEvent.select().where(OrderEvent.order == paid.id,
                                     OrderEvent.to_status == orders.DELIVERED).count() == 1


@pytest.mark.parametrize("secret, age, header", [
    ("whsec_forged_" + "f" * 24, 0, None),  # signed with another secret
    (CALLBACK_SECRET, 1000, None),  # stale: outside the 5 minute tolerance
    (SECRET, 0, None),  # the request secret, not the callback secret
    (None, 0, None),  # no signature
    (None, 0, "t=abc,v1=00"),  # garbage
])
def test_forged_or_stale_callbacks_are_refused_and_store_nothing(app, client, paid, receiver,
                                                                 caplog, secret, age, header):
    receiver.answer((202, {}))
    worker.deliver_once(app)
    raw = json.dumps({"id": paid.public_id, "status": "delivered", "reference": "OP-6"}).encode()
    headers = {"Content-Type": "application/json"}
    if secret:
        headers["Topup-Signature"] = sign(secret, raw, int(time.time()) - age)
    elif header:
        headers["Topup-Signature"] = header
    with caplog.at_level(logging.INFO):
        response = client.post(PATH, data=raw, headers=headers)
    assert response.status_code == 400
    assert response.mimetype == "text/plain" and response.get_data(as_text=True).startswith(
        "refused: ")
    assert "refused operator webhook callback" in caplog.text
    assert SECRET not in caplog.text and CALLBACK_SECRET not in caplog.text
    assert OperatorWebhookResult.select().count() == 0
    assert worker.deliver_once(app) is False  # not woken
    assert delivery_of(paid).status == "waiting"


def test_bad_callbacks(app, client, paid, receiver):
    receiver.answer((202, {}))
    worker.deliver_once(app)
    unknown = post_callback(client, {"id": "no-such-order", "status": "delivered",
                                     "reference": "OP-7"})
    assert unknown.status_code == 404
    assert post_callback(client, b"{not json").status_code == 400
    assert post_callback(client, b"[1, 2]").status_code == 400
    assert post_callback(client, {"id": paid.public_id, "status": "done"}).status_code == 400
    assert post_callback(client, {"id": paid.public_id, "status": "delivered"}).status_code == 400
    assert post_callback(client, {"id": paid.public_id, "status": "delivered",
                                  "reference": "x" * 101}).status_code == 400
    assert OperatorWebhookResult.select().count() == 0
    assert worker.deliver_once(app) is False


def test_lookup_takes_every_account_without_a_nickname(app):
    backend = app.extensions["topup"].backends["operator_webhook"]
    info = backend.lookup_account(None, "anyone")
    assert (info.found, info.nickname) == (True, None)


# --- settings -----------------------------------------------------------------------------


def backend_for(config, tmp_path, monkeypatch, settings):
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path / "instance"))
    config["PLUGINS"]["operator_webhook"] = settings
    registry = create_app(config).extensions["topup"]
    return registry.backends.get("operator_webhook"), registry


@pytest.mark.parametrize("url", ["http://fulfil.example.com/hook", "ftp://127.0.0.1/x",
                                 "https://user:hunter2@fulfil.example.com/hook", "not a url"])
def test_an_unsafe_url_is_refused_when_the_shop_starts(config, tmp_path, monkeypatch, url):
    backend, registry = backend_for(config, tmp_path, monkeypatch,
                                    {"url": url, "secret": SECRET})
    assert backend is None
    assert registry.errors["operator_webhook"].startswith("ValueError: operator_webhook url")
    assert SECRET not in registry.errors["operator_webhook"] and "hunter2" not in registry.errors[
        "operator_webhook"]


@pytest.mark.parametrize("url", ["https://fulfil.example.com/hook", "http://localhost:9000/h",
                                 "http://127.0.0.2/h", "http://[::1]:8080/h"])
def test_https_or_loopback_http_is_taken(config, tmp_path, monkeypatch, url):
    backend, _ = backend_for(config, tmp_path, monkeypatch, {"url": url, "secret": SECRET})
    assert isinstance(backend, OperatorWebhook)
    assert (backend.timeout, backend.callback_secret) == (10, SECRET)  # the defaults
    assert SECRET not in repr(backend)


@pytest.mark.parametrize("settings", [{}, {"url": "https://fulfil.example.com/hook"},
                                      {"secret": SECRET}])
def test_without_url_and_secret_it_is_not_configured(config, tmp_path, monkeypatch, settings):
    backend, registry = backend_for(config, tmp_path, monkeypatch, settings)
    assert backend is None and "operator_webhook" in registry.not_configured
    assert "operator_webhook" not in registry.errors


def test_the_receivers_verify_example_in_the_docs_works():
    text = (ROOT / "docs" / "backends" / "operator-webhook.md").read_text()
    section = text.split("## Verifying the signature", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(code, scope)
    body = b'{"type":"delivery.requested","id":"abc"}'
    assert scope["verify"](SECRET, body, sign(SECRET, body))
    assert scope["verify"](SECRET, body, "v1=00," + sign(SECRET, body))  # rotation
    assert not scope["verify"](SECRET, body + b" ", sign(SECRET, body))
    assert not scope["verify"](CALLBACK_SECRET, body, sign(SECRET, body))
    assert not scope["verify"](SECRET, body, sign(SECRET, body, int(time.time()) - 301))
    assert not scope["verify"](SECRET, body, "")
