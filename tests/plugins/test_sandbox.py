"""The sandbox plugins: webhook signing, the fake payment provider and the
ledger delivery backend."""
from __future__ import annotations

import json
import re
import socket
import time

import pytest
from flask import request

from topup import create_app, orders
from topup.delivery import AccountInfo
from topup.models import Delivery, Order, Payment, Product, WebhookEvent
from topup.money import Money
from topup.payments import PaymentEvent, WebhookRejected
from topup_plugins.sandbox import signing
from topup_plugins.sandbox.delivery import SandboxCredit, SandboxDelivery, nickname_for
from topup_plugins.sandbox.payment import SandboxCheckout, SandboxPayment, send_webhook

from tests.conftest import CSRF, WEBHOOK_SECRET, place_order, sandbox_event

BODY = b'{"id":"evt_1","type":"payment.succeeded"}'
SECRET = "whsec_unit_" + "z" * 20


# --- signing ---------------------------------------------------------------------------


def test_sign_then_verify_round_trips():
    header = signing.sign(SECRET, BODY)
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    signing.verify(SECRET, BODY, header)  # does not raise


def test_sign_is_deterministic_for_a_timestamp():
    assert signing.sign(SECRET, BODY, 1_700_000_000) == signing.sign(SECRET, BODY, 1_700_000_000)
    assert signing.sign(SECRET, BODY, 1_700_000_000) != signing.sign(SECRET, BODY, 1_700_000_001)
    assert signing.sign(SECRET, BODY, 1_700_000_000).startswith("t=1700000000,v1=")


def test_a_tampered_body_is_refused():
    header = signing.sign(SECRET, BODY)
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(SECRET, BODY.replace(b"succeeded", b"failed"), header)
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(SECRET, BODY + b" ", header)


def test_a_wrong_secret_is_refused():
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(SECRET, BODY, signing.sign("another-secret", BODY))


def test_a_tampered_timestamp_is_refused():
    now = int(time.time())
    mac = signing.sign(SECRET, BODY, now).split("v1=")[1]
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(SECRET, BODY, f"t={now - 1},v1={mac}")


@pytest.mark.parametrize("offset", [-301, -3600, 301, 3600])
def test_timestamps_outside_the_tolerance_are_refused(offset):
    now = time.time()
    header = signing.sign(SECRET, BODY, int(now) + offset)
    with pytest.raises(signing.SignatureError, match="tolerance"):
        signing.verify(SECRET, BODY, header, now=int(now))


@pytest.mark.parametrize("offset", [-300, -299, 0, 299, 300])
def test_timestamps_inside_the_tolerance_are_accepted(offset):
    now = 1_700_000_000
    signing.verify(SECRET, BODY, signing.sign(SECRET, BODY, now + offset), now=now)


@pytest.mark.parametrize("header", [None, ""])
def test_a_missing_header_is_refused(header):
    with pytest.raises(signing.SignatureError, match="missing"):
        signing.verify(SECRET, BODY, header)


@pytest.mark.parametrize("header", ["v1=abc", "t=soon,v1=abc", "garbage", "t=,v1=abc"])
def test_a_header_without_a_valid_timestamp_is_refused(header):
    with pytest.raises(signing.SignatureError, match="timestamp"):
        signing.verify(SECRET, BODY, header)


def test_a_header_without_any_v1_is_refused():
    now = int(time.time())
    mac = signing.sign(SECRET, BODY, now).split("v1=")[1]
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(SECRET, BODY, f"t={now}")
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(SECRET, BODY, f"t={now},v0={mac}")


def test_several_v1_entries_pass_when_one_is_valid():
    """Secret rotation: the sender signs with the old and the new secret."""
    now = int(time.time())
    valid = signing.sign(SECRET, BODY, now).split("v1=")[1]
    old = signing.sign("old-secret", BODY, now).split("v1=")[1]
    signing.verify(SECRET, BODY, f"t={now},v1={old},v1={valid}")
    signing.verify(SECRET, BODY, f"t={now}, v1={valid}, v1={'0' * 64}")  # spaces tolerated
    with pytest.raises(signing.SignatureError):
        signing.verify(SECRET, BODY, f"t={now},v1={old},v1={'0' * 64}")


# --- SandboxPayment: construction and the registry -----------------------------------------


def test_the_provider_refuses_to_exist_without_a_secret():
    with pytest.raises(ValueError, match="webhook_secret"):
        SandboxPayment({})
    with pytest.raises(ValueError, match="webhook_secret"):
        SandboxPayment({"webhook_secret": ""})


def make_app(config, tmp_path, monkeypatch):
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path / "instance"))
    return create_app(config)


@pytest.mark.parametrize("settings", [{}, {"sandbox_payment": {}},
                                      {"sandbox_payment": {"webhook_secret": ""}}])
def test_registry_contains_a_provider_without_a_secret_and_hides_it(config, tmp_path,
                                                                     monkeypatch, settings):
    config["PLUGINS"] = settings
    registry = make_app(config, tmp_path, monkeypatch).extensions["topup"]
    assert "sandbox" not in registry.providers
    assert "webhook_secret" in registry.errors["sandbox_payment"]
    assert registry.errors["sandbox_payment"].startswith("ValueError")
    assert "sandbox" in registry.backends  # the delivery plugin is unaffected
    assert "sandbox_delivery" not in registry.errors


def test_registry_contains_a_secret_from_a_missing_environment_variable(config, tmp_path,
                                                                        monkeypatch):
    monkeypatch.delenv("NO_SUCH_SANDBOX_SECRET", raising=False)
    config["PLUGINS"] = {"sandbox_payment": {"webhook_secret": {"$env": "NO_SUCH_SANDBOX_SECRET"}}}
    registry = make_app(config, tmp_path, monkeypatch).extensions["topup"]
    assert "sandbox" not in registry.providers
    assert "NO_SUCH_SANDBOX_SECRET" in registry.errors["sandbox_payment"]


def test_the_webhook_of_a_hidden_provider_is_not_found(config, tmp_path, monkeypatch):
    config["PLUGINS"] = {}
    app = make_app(config, tmp_path, monkeypatch)
    body = json.dumps({"id": "evt", "type": "payment.succeeded"}).encode()
    response = app.test_client().post("/webhooks/sandbox", data=body, headers={
        signing.HEADER: signing.sign(WEBHOOK_SECRET, body)})
    assert response.status_code == 404


# --- SandboxPayment: start, parse_webhook, fetch_status ----------------------------------


def provider(app) -> SandboxPayment:
    return app.extensions["topup"].providers["sandbox"]


@pytest.fixture
def order(app, client):
    with app.app_context():
        return place_order(client, country="BR")


def payment_of(order) -> Payment:
    return Payment.get(Payment.order == order.id)


def test_start_opens_a_checkout_for_the_server_amount(app, order):
    with app.test_request_context():
        action = provider(app).start(Order.get_by_id(order.id), return_url="http://shop/back")
    checkout = SandboxCheckout.get(SandboxCheckout.ref == action.provider_ref)
    assert action.kind == "redirect" and action.url == f"/sandbox/checkout/{checkout.ref}"
    assert checkout.ref.startswith("sbx_")
    assert (checkout.order_ref, checkout.amount, checkout.currency) == (
        order.public_id, order.amount, "BRL")
    assert (checkout.status, checkout.return_url) == ("open", "http://shop/back")
    assert checkout.money == Money(order.amount, "BRL")


def test_the_order_payment_points_at_its_checkout(app, order):
    payment = payment_of(order)
    checkout = SandboxCheckout.get(SandboxCheckout.ref == payment.provider_ref)
    assert payment.status == "started"
    assert payment.action["kind"] == "redirect" and checkout.ref in payment.action["url"]
    assert checkout.order_ref == order.public_id


def parse(app, body: bytes, header: str | None):
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers[signing.HEADER] = header
    with app.test_request_context("/webhooks/sandbox", method="POST", data=body,
                                  headers=headers):
        return provider(app).parse_webhook(request)


def test_parse_webhook_returns_the_signed_event(app, order):
    body = sandbox_event(order, event_id="evt_parse")
    [event] = parse(app, body, signing.sign(WEBHOOK_SECRET, body))
    payment = payment_of(order)
    assert event == PaymentEvent(event_id="evt_parse", kind="succeeded",
                                 payment_ref=payment.provider_ref,
                                 amount=Money(payment.amount, payment.currency))


@pytest.mark.parametrize("header_for", [
    lambda body: None,
    lambda body: signing.sign("whsec_wrong", body),
    lambda body: signing.sign(WEBHOOK_SECRET, body, int(time.time()) - 301),
    lambda body: signing.sign(WEBHOOK_SECRET, body + b"x"),
])
def test_parse_webhook_refuses_bad_signatures(app, order, header_for):
    body = sandbox_event(order)
    with pytest.raises(WebhookRejected):
        parse(app, body, header_for(body))


@pytest.mark.parametrize("body", [
    b"not json",
    b"[]",
    b'{"id": "evt", "type": "payment.succeeded"}',
    b'{"id": "evt", "type": "succeeded", "data": {"payment_id": "p", "amount": 1, "currency": "USD"}}',
    b'{"id": "evt", "type": "payment.teleported", "data": {"payment_id": "p", "amount": 1, "currency": "USD"}}',
    b'{"id": "evt", "type": "payment.succeeded", "data": {"payment_id": "p", "amount": "lots", "currency": "USD"}}',
])
def test_parse_webhook_refuses_malformed_events_even_when_signed(app, body):
    with pytest.raises(WebhookRejected, match="malformed"):
        parse(app, body, signing.sign(WEBHOOK_SECRET, body))


def test_fetch_status_of_an_open_or_unknown_checkout_is_none(app, order):
    sandbox = provider(app)
    assert sandbox.fetch_status(payment_of(order)) is None
    assert sandbox.fetch_status(Payment(provider="sandbox", provider_ref="sbx_nope",
                                        amount=1, currency="USD")) is None


def decide(client, order, decision):
    path = f"/sandbox/checkout/{payment_of(order).provider_ref}"
    token = CSRF.search(client.get(path).get_data(as_text=True)).group(1)
    return client.post(path, data={"csrf_token": token, "decision": decision})


@pytest.fixture
def webhooks(sandbox_webhooks):
    sent = sandbox_webhooks  # (url, secret, body) per webhook
    return sent


@pytest.mark.parametrize("decision,kind,final", [("approve", "succeeded", orders.PAID),
                                                 ("decline", "failed", orders.FAILED)])
def test_fetch_status_after_a_decision_tells_the_outcome(app, client, order, webhooks,
                                                         decision, kind, final):
    assert decide(client, order, decision).status_code == 303
    payment = payment_of(order)
    event = provider(app).fetch_status(payment)
    assert event == PaymentEvent(event_id=f"evt_{payment.provider_ref}_{kind}", kind=kind,
                                 payment_ref=payment.provider_ref,
                                 amount=Money(payment.amount, payment.currency))
    # The fetched event heals a missed webhook ...
    with app.app_context():
        assert orders.apply_payment_event("sandbox", event) == "applied"
    assert Order.get_by_id(order.id).status == final
    # ... and the webhook sent for the same decision is then a harmless duplicate.
    [(url, secret, body)] = webhooks
    assert url.endswith("/webhooks/sandbox") and secret == WEBHOOK_SECRET
    assert json.loads(body)["id"] == event.event_id
    response = client.post("/webhooks/sandbox", data=body, headers={
        "Content-Type": "application/json", signing.HEADER: signing.sign(secret, body)})
    assert response.status_code == 200 and response.get_json()["outcomes"] == ["duplicate"]
    assert WebhookEvent.select().count() == 1


def test_event_for_matches_what_parse_webhook_reads(app, order):
    checkout = SandboxCheckout.get(SandboxCheckout.ref == payment_of(order).provider_ref)
    checkout.status = "approved"
    checkout.save()
    body = provider(app).event_for(checkout)
    [event] = parse(app, body, signing.sign(WEBHOOK_SECRET, body))
    # the webhook and a re-fetch describe the same fact under the same event id
    assert event == provider(app).fetch_status(payment_of(order))
    assert (event.kind, event.payment_ref, event.amount) == ("succeeded", checkout.ref,
                                                             checkout.money)
    assert json.loads(body)["data"]["reference"] == order.public_id


# --- send_webhook over HTTP --------------------------------------------------------------------


def closed_port() -> int:
    """A port nothing listens on (bound, then closed): connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_send_webhook_gives_up_after_its_attempts(caplog):
    url = f"http://127.0.0.1:{closed_port()}/webhooks/sandbox"
    assert send_webhook(url, SECRET, BODY, delays=(0, 0)) is False
    assert "given up after 2 attempts" in caplog.text


def test_send_webhook_retries_a_refused_delivery_then_stops(app, live_server, caplog):
    # A body signed with another secret is refused with 400 every time.
    url = f"{live_server.url}/webhooks/sandbox"
    assert send_webhook(url, "whsec_wrong", BODY, delays=(0, 0, 0)) is False
    assert caplog.text.count("HTTP 400") == 3


# --- SandboxDelivery ------------------------------------------------------------------------


@pytest.fixture
def backend(app) -> SandboxDelivery:
    return app.extensions["topup"].backends["sandbox"]


@pytest.mark.parametrize("username", ["nobody", "nobody123", "nobody.here"])
def test_lookup_of_nobody_is_not_found(app, backend, username):
    product = Product.get()
    info = backend.lookup_account(product, username)
    assert info == AccountInfo(username, found=False, reason="No such account.")
    assert info.nickname is None


@pytest.mark.parametrize("username,nickname", [
    ("maria.santos", "Maria Santos"), ("john_doe99", "John Doe"), ("demo_user", "Demo User"),
    ("a1b2", "A B"), ("somebody", "Somebody"), ("x.nobody", "X Nobody"),
])
def test_lookup_of_anyone_else_is_found_with_a_nickname(app, backend, username, nickname):
    info = backend.lookup_account(Product.get(), username)
    assert info == AccountInfo(username, found=True, nickname=nickname)


def test_a_username_without_letters_is_its_own_nickname():
    assert nickname_for("2024") == "2024"
    assert nickname_for("__") == "__"


def test_deliver_twice_credits_once_with_the_same_reference(app, backend, order):
    with app.app_context():
        first = backend.deliver(Order.get_by_id(order.id))
        second = backend.deliver(Order.get_by_id(order.id))
    assert first.status == second.status == "delivered"
    assert first.reference == second.reference and re.fullmatch(r"SBX-\d{6}", first.reference)
    [credit] = SandboxCredit.select()
    assert (credit.order_ref, credit.account_id, credit.quantity) == (
        order.public_id, order.account_id, order.quantity)
    assert credit.attempts == 2 and credit.credited_at is not None
    assert credit.reference == first.reference


def test_deliveries_of_different_orders_get_their_own_credit(app, client, backend):
    with app.app_context():
        first, second = place_order(client), place_order(client, account="@other")
        one = backend.deliver(first)
        two = backend.deliver(second)
    assert one.reference != two.reference
    assert SandboxCredit.select().count() == 2


@pytest.fixture
def fails_twice(config):
    config["PLUGINS"]["sandbox_delivery"] = {"fail_times": 2}
    return config


def test_fail_times_answers_retry_that_many_times_then_credits(fails_twice, app, backend,
                                                               order):
    with app.app_context():
        answers = [backend.deliver(Order.get_by_id(order.id)) for _ in range(4)]
    assert [a.status for a in answers] == ["retry", "retry", "delivered", "delivered"]
    assert answers[0].message == "sandbox told to fail" and answers[0].reference is None
    assert answers[2].reference == answers[3].reference
    credit = SandboxCredit.get()
    assert credit.attempts == 4 and credit.reference == answers[2].reference


def test_delivery_fetch_status_reports_only_a_credit(app, backend, order):
    with app.app_context():
        orders.apply_payment_event("sandbox", PaymentEvent(
            event_id="evt_pay", kind="succeeded", payment_ref=payment_of(order).provider_ref))
        delivery = Delivery.get(Delivery.order == order.id)
        assert backend.fetch_status(delivery) is None
        result = backend.deliver(delivery.order)
        assert backend.fetch_status(delivery) == result
        assert result.status == "delivered"
