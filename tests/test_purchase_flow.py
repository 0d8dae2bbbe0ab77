"""The buyer's purchase through the sandbox checkout page, with the test client."""
import re
from datetime import timedelta

from topup import orders
from topup.models import Order, Payment, utcnow
from topup_plugins.sandbox.payment import SandboxCheckout

from tests.conftest import CSRF, place_order, sandbox_event, signed_headers


def checkout_path(client, order) -> str:
    page = client.get(f"/orders/{order.public_id}").get_data(as_text=True)
    return re.search(r'href="(/sandbox/checkout/[^"]+)"', page).group(1)


def decide(client, path, decision):
    token = CSRF.search(client.get(path).get_data(as_text=True)).group(1)
    return client.post(path, data={"csrf_token": token, "decision": decision})


def test_buy_then_signed_webhook_pays_and_queues_one_delivery(client):
    order = place_order(client)
    assert order.status == orders.AWAITING_PAYMENT
    body = sandbox_event(order)
    response = client.post("/webhooks/sandbox", data=body, headers=signed_headers(body))
    assert response.status_code == 200
    assert Order.get_by_id(order.id).status == orders.PAID
    assert order.deliveries.count() == 1


def test_sandbox_checkout_shows_the_server_amount_and_returns_to_the_order(client, monkeypatch):
    sent = []
    monkeypatch.setattr("topup_plugins.sandbox.payment.send_webhook",
                        lambda url, secret, body, **_: sent.append((url, body)))
    order = place_order(client, country="BR")
    path = checkout_path(client, order)
    page = client.get(path).get_data(as_text=True)
    assert "R$" in page and "Approve payment" in page

    response = decide(client, path, "approve")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/orders/{order.public_id}")
    assert len(sent) == 1 and sent[0][0].endswith("/webhooks/sandbox")
    assert b'"payment.succeeded"' in sent[0][1]
    # A second decision (a stale tab, say) changes nothing and sends nothing.
    token = CSRF.search(page).group(1)
    assert client.post(path, data={"csrf_token": token, "decision": "decline"}).status_code == 303
    assert len(sent) == 1
    assert "already approved" in client.get(path).get_data(as_text=True)


def test_an_expired_sandbox_checkout_cannot_be_approved(client, monkeypatch):
    sent = []
    monkeypatch.setattr("topup_plugins.sandbox.payment.send_webhook",
                        lambda *args, **_: sent.append(args))
    order = place_order(client)
    path = checkout_path(client, order)
    token = CSRF.search(client.get(path).get_data(as_text=True)).group(1)
    SandboxCheckout.update(expires_at=utcnow() - timedelta(seconds=1)).execute()
    response = client.post(path, data={"csrf_token": token, "decision": "approve"})
    assert response.status_code == 409
    assert "This checkout has expired" in response.get_data(as_text=True)
    assert sent == []
    assert SandboxCheckout.get().status == "open"


def test_a_decision_must_be_approve_or_decline(client):
    order = place_order(client)
    path = checkout_path(client, order)
    assert decide(client, path, "maybe").status_code == 400


def test_order_page_polling_notices_the_payment_action_arriving(client):
    """A double tap's second request can show the order before the first has
    started the payment: the block must not stay on "Preparing" forever."""
    order = place_order(client)
    payment = order.latest_payment()
    action = payment.action
    Payment.update(action=None).where(Payment.id == payment.id).execute()
    page = client.get(f"/orders/{order.public_id}").get_data(as_text=True)
    assert "Preparing your payment" in page and "seen=preparing" in page
    htmx = {"HX-Request": "true"}
    live = f"/orders/{order.public_id}/live?seen=preparing"
    assert client.get(live, headers=htmx).status_code == 204
    Payment.update(action=action).where(Payment.id == payment.id).execute()
    response = client.get(live, headers=htmx)
    assert response.status_code == 200
    assert "/sandbox/checkout/" in response.get_data(as_text=True)
