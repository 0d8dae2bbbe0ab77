"""Input meant to break things gets a clear 4xx, and never reaches a plugin or the database."""
import json
import textwrap
import time

import pytest

from topup import create_app
from topup.cli import display_url
from topup.models import Order, WebhookEvent

from tests.conftest import (
    CSRF, buy, form_tokens, place_order, plugin_problems, sandbox_event, signed_headers,
)


@pytest.mark.parametrize("header", [
    "t=" + "9" * 400 + ",v1=00",  # would overflow a float comparison
    f"t={int(time.time())},v1=\u00e9\u00e9",  # non-ASCII signature
    f"t={int(time.time())}.5,v1=00",
    "t=-5,v1=00",
])
def test_hostile_signature_headers_are_rejected_not_blamed_on_the_plugin(app, client, header):
    order = place_order(client)
    body = sandbox_event(order)
    response = client.post("/webhooks/sandbox", data=body,
                           headers={"Content-Type": "application/json", "Sandbox-Signature": header})
    assert response.status_code == 400
    assert "sandbox" not in plugin_problems()
    assert Order.get_by_id(order.id).status == "awaiting_payment"


@pytest.mark.parametrize("field", ["id", "payment_id"])
def test_signed_events_with_unprintable_ids_are_rejected(client, field):
    order = place_order(client)
    event = json.loads(sandbox_event(order))
    if field == "id":
        event["id"] = "evt_\u0000"
    else:
        event["data"]["payment_id"] = "x" * 101
    body = json.dumps(event).encode()
    response = client.post("/webhooks/sandbox", data=body, headers=signed_headers(body))
    assert response.status_code == 400
    assert WebhookEvent.select().count() == 0


def test_nul_bytes_in_forms_and_addresses_are_a_400(client):
    tokens = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))
    response = buy(client, tokens=tokens, email="a\x00@example.com")
    assert response.status_code == 400
    assert "characters we can&#39;t accept" in response.get_data(as_text=True)
    assert client.get("/orders/abc%00def").status_code == 400
    assert client.get("/tiktok-coins?account=maria%00").status_code == 400
    assert Order.select().count() == 0


def test_a_forged_host_header_cannot_aim_the_sandbox_webhook(app, client, sandbox_webhooks):
    sent = sandbox_webhooks  # (url, secret, body) per webhook
    app.config["INTERNAL_URL"] = "http://127.0.0.1:8080"
    order = place_order(client)
    page = client.get(f"/orders/{order.public_id}").get_data(as_text=True)
    path = page.split('href="/sandbox/checkout/', 1)[1].split('"', 1)[0]
    forged = "http://169.254.169.254"  # the whole visit arrives with a forged Host
    checkout = client.get(f"/sandbox/checkout/{path}", base_url=forged).get_data(as_text=True)
    response = client.post(f"/sandbox/checkout/{path}", base_url=forged, data={
        "csrf_token": CSRF.search(checkout).group(1), "decision": "approve"})
    assert response.status_code == 303
    assert [url for url, _, _ in sent] == ["http://127.0.0.1:8080/webhooks/sandbox"]


def test_database_urls_are_printed_without_credentials():
    assert display_url("postgresql://u:pw@h:5432/db?password=x") == "postgresql://h:5432/db"
    assert display_url("postgresql:///test?password=x") == "postgresql:///test"
    assert display_url("sqlite:////srv/topup.sqlite") == "sqlite:////srv/topup.sqlite"


def test_a_method_whose_limit_check_raises_is_hidden_at_buy(app, client):
    registry = app.extensions["topup"]
    tokens = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))

    def explode(amount):
        raise RuntimeError("limits broke")

    registry.providers["sandbox"].accepts = explode
    response = buy(client, tokens=tokens)
    assert response.status_code == 422
    assert "limits broke" in plugin_problems()["sandbox"]
    assert Order.select().count() == 0


def test_one_broken_class_does_not_hide_its_siblings(config, tmp_path, monkeypatch):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "pair.py").write_text(textwrap.dedent('''
        from topup import hookimpl
        from topup.payments import PaymentProvider

        class Broken(PaymentProvider):
            id, name = "broken", "Broken"
            def __init__(self, settings):
                raise RuntimeError("no")

        class Fine(PaymentProvider):
            id, name = "fine", "Fine"

        @hookimpl
        def register_payment_providers():
            return [Broken, Fine]
    '''))
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path))
    registry = create_app(config).extensions["topup"]
    assert "fine" in registry.providers and "broken" not in registry.providers
    assert "no" in registry.errors["pair"]


def test_a_canceled_order_does_not_promise_no_money_was_taken(app, client):
    order = place_order(client)
    Order.update(status="canceled").where(Order.id == order.id).execute()
    page = client.get(f"/orders/{order.public_id}").get_data(as_text=True)
    assert "Order canceled" in page and "it will be refunded" in page
    assert "No money was taken" not in page
