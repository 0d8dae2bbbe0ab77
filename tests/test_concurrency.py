"""Replays against a real server: the same signed webhook from many threads at once."""
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from topup import orders
from topup.models import Delivery, Order, OrderEvent, WebhookEvent
from topup_plugins.sandbox.delivery import SandboxCredit

from tests.conftest import place_order, sandbox_event, signed_headers, wait_for


def post(url, body, headers):
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_same_webhook_50_times_concurrently_pays_and_delivers_once(app, client, live_server):
    with app.app_context():
        order = place_order(client)
        body = sandbox_event(order)
    headers = signed_headers(body)
    url = f"{live_server.url}/webhooks/sandbox"

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda _: post(url, body, headers), range(50)))

    assert statuses == [200] * 50
    with app.app_context():
        wait_for(lambda: Order.get_by_id(order.id).status == orders.DELIVERED)
        paid = OrderEvent.select().where(OrderEvent.order == order.id,
                                         OrderEvent.to_status == orders.PAID)
        assert paid.count() == 1
        assert Delivery.select().where(Delivery.order == order.id).count() == 1
        assert WebhookEvent.select().count() == 1
        assert SandboxCredit.select().where(SandboxCredit.order_ref == order.public_id).count() == 1
