"""The buyer's purchase through the sandbox checkout page, with the test client."""
import re
from datetime import timedelta

from topup.models import utcnow
from topup_plugins.sandbox.payment import SandboxCheckout

from tests.conftest import CSRF, place_order


def checkout_path(client, order) -> str:
    page = client.get(f"/orders/{order.public_id}").get_data(as_text=True)
    return re.search(r'href="(/sandbox/checkout/[^"]+)"', page).group(1)


def decide(client, path, decision):
    token = CSRF.search(client.get(path).get_data(as_text=True)).group(1)
    return client.post(path, data={"csrf_token": token, "decision": decision})


def test_sandbox_checkout_shows_the_server_amount_and_returns_to_the_order(client, sandbox_webhooks):
    sent = sandbox_webhooks  # (url, secret, body) per webhook
    order = place_order(client, country="BR")
    path = checkout_path(client, order)
    page = client.get(path).get_data(as_text=True)
    assert "R$" in page and "Approve payment" in page

    response = decide(client, path, "approve")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/orders/{order.public_id}")
    assert len(sent) == 1 and sent[0][0].endswith("/webhooks/sandbox")
    assert b'"payment.succeeded"' in sent[0][2]
    # A second decision (a stale tab, say) changes nothing and sends nothing.
    token = CSRF.search(page).group(1)
    assert client.post(path, data={"csrf_token": token, "decision": "decline"}).status_code == 303
    assert len(sent) == 1
    assert "already approved" in client.get(path).get_data(as_text=True)


def test_an_expired_sandbox_checkout_cannot_be_approved(client, sandbox_webhooks):
    sent = sandbox_webhooks  # (url, secret, body) per webhook
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
