from topup import orders
from topup.models import Order

from tests.conftest import place_order, sandbox_event, signed_headers


def test_buy_then_signed_webhook_pays_and_queues_one_delivery(client):
    order = place_order(client)
    assert order.status == orders.AWAITING_PAYMENT
    body = sandbox_event(order)
    response = client.post("/webhooks/sandbox", data=body, headers=signed_headers(body))
    assert response.status_code == 200
    assert Order.get_by_id(order.id).status == orders.PAID
    assert order.deliveries.count() == 1
