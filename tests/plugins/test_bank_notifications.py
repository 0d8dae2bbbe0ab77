"""Offline methods (Pix, PromptPay, QRIS, UPI, SEPA) confirmed by a signed bank notification."""
import json
import time

import pytest

from topup import orders, signing
from topup.models import Order, WebhookEvent
from topup_plugins.qr.common import NOTIFICATION_HEADER

from tests.conftest import place_order
from tests.plugins.test_qr import SETTINGS, WHERE

SECRET = "bank-notification-secret"


@pytest.fixture
def config(config):
    config["PLUGINS"] = {**config["PLUGINS"],
                         **{name: {**settings, "notification_secret": SECRET}
                            for name, settings in SETTINGS.items()}}
    return config


def notify(client, order, *, amount=None, event_id="bank-1", secret=SECRET, kind="payment.received",
           timestamp=None):
    payment = order.latest_payment()
    body = json.dumps({"id": event_id, "type": kind, "reference": payment.provider_ref,
                       "amount": payment.amount if amount is None else amount,
                       "currency": payment.currency}).encode()
    return client.post(f"/webhooks/{payment.provider}", data=body, headers={
        "Content-Type": "application/json",
        NOTIFICATION_HEADER: signing.sign(secret, body, timestamp)})


@pytest.mark.parametrize("method", sorted(WHERE))
def test_a_signed_notification_pays_the_order(client, method):
    order = place_order(client, country=WHERE[method], method=method)
    response = notify(client, order)
    assert response.status_code == 200
    assert Order.get_by_id(order.id).status == orders.PAID
    assert notify(client, order).status_code == 200  # the bank retries: nothing more happens
    assert order.deliveries.count() == 1 and WebhookEvent.select().count() == 1


@pytest.mark.parametrize("change, status", [
    ({"secret": "wrong"}, 400),
    ({"timestamp": int(time.time()) - 301}, 400),
    ({"kind": "payment.sent"}, 400),
    ({"event_id": "bank 1"}, 400),
])
def test_forged_stale_or_odd_notifications_change_nothing(client, change, status):
    order = place_order(client, country="BR", method="pix")
    assert notify(client, order, **change).status_code == status
    assert Order.get_by_id(order.id).status == orders.AWAITING_PAYMENT
    assert WebhookEvent.select().count() == 0


def test_the_wrong_amount_needs_a_person(client):
    order = place_order(client, country="TH", method="promptpay")
    assert notify(client, order, amount=order.amount - 100).status_code == 200
    assert Order.get_by_id(order.id).status == orders.NEEDS_ATTENTION
    assert order.deliveries.count() == 0


def test_a_notification_for_someone_elses_reference_is_404(client):
    order = place_order(client, country="IN", method="upi")
    payment = order.latest_payment()
    body = json.dumps({"id": "bank-9", "type": "payment.received", "reference": "TUNOTOURS",
                       "amount": payment.amount, "currency": "INR"}).encode()
    response = client.post("/webhooks/upi", data=body, headers={
        NOTIFICATION_HEADER: signing.sign(SECRET, body), "Content-Type": "application/json"})
    assert response.status_code == 404
    assert Order.get_by_id(order.id).status == orders.AWAITING_PAYMENT
