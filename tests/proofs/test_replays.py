"""Replays and races against a real running server (waitress + worker threads):
one signed webhook 100 times at once, and two events for the same payment
(different ids) racing the buyer's return to the order page."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from topup import orders
from topup.models import Delivery, Order, OrderEvent, WebhookEvent
from topup_plugins.sandbox.delivery import SandboxCredit

from tests.conftest import place_order, sandbox_event, signed_headers, wait_for

HX = {"HX-Request": "true"}


def request(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    method = "POST" if body is not None else "GET"
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def exactly_once(order: Order) -> None:
    """Paid once, one outbox row, delivered once, one credit in the ledger."""
    wait_for(lambda: Order.get_by_id(order.id).status == orders.DELIVERED, timeout=20)
    events = OrderEvent.select().where(OrderEvent.order == order.id)
    assert events.where(OrderEvent.to_status == orders.PAID).count() == 1
    assert events.where(OrderEvent.to_status == orders.DELIVERED).count() == 1
    assert Delivery.select().where(Delivery.order == order.id).count() == 1
    credits = SandboxCredit.select().where(SandboxCredit.order_ref == order.public_id)
    assert credits.count() == 1 and credits.get().credited_at is not None


def test_the_same_webhook_100_times_at_once_pays_and_delivers_once(app, client, live_server):
    with app.app_context():
        order = place_order(client)
        body = sandbox_event(order)
    headers = signed_headers(body)
    url = f"{live_server.url}/webhooks/sandbox"
    start = threading.Barrier(100)

    def send(_):
        start.wait()
        return request(url, body, headers)

    with ThreadPoolExecutor(max_workers=100) as pool:
        answers = list(pool.map(send, range(100)))

    assert [status for status, _ in answers] == [200] * 100
    outcomes = sorted(json.loads(text)["outcomes"][0] for _, text in answers)
    assert outcomes == ["applied"] + ["duplicate"] * 99
    assert WebhookEvent.select().count() == 1
    exactly_once(order)


def test_two_event_ids_for_one_payment_racing_the_buyers_return_deliver_once(app, client,
                                                                            live_server):
    """A provider that tells the same success twice under two ids (a retry
    with a new id, a second channel), both arriving while the buyer comes
    back to the order page and its status block polls."""
    rounds = 5
    with app.app_context():
        placed = [place_order(client, account=f"@racer_{index}") for index in range(rounds)]
    for order in placed:
        first = sandbox_event(order, event_id=f"evt_{order.public_id}_a")
        second = sandbox_event(order, event_id=f"evt_{order.public_id}_b")
        page = f"{live_server.url}/orders/{order.public_id}"
        live = f"{page}/live?seen=awaiting_payment"
        calls = ([("POST", first, signed_headers(first)), ("POST", second, signed_headers(second))]
                 + [("GET", page, {})] * 4 + [("LIVE", live, HX)] * 4)
        start = threading.Barrier(len(calls))

        def call(item):
            kind, payload, headers = item
            start.wait()
            if kind == "POST":
                return kind, *request(f"{live_server.url}/webhooks/sandbox", payload, headers)
            return kind, *request(payload, None, headers)

        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            answers = list(pool.map(call, calls))

        hooks = [json.loads(text) for kind, status, text in answers if kind == "POST"]
        assert [status for kind, status, _ in answers if kind == "POST"] == [200, 200]
        assert sorted(hook["outcomes"][0] for hook in hooks) == ["applied", "ignored"]
        for kind, status, text in answers:
            if kind == "GET":
                assert status == 200 and b"<html" in text
            elif kind == "LIVE":  # unchanged: nothing to swap; changed: the new block
                assert status in (200, 204), status
                assert status == 204 or b"<html" not in text
        exactly_once(order)
        assert WebhookEvent.select().where(WebhookEvent.order == order.id).count() == 2
    time.sleep(0.2)  # the worker threads had their chance at a second delivery
    assert SandboxCredit.select().count() == rounds
    assert Delivery.select().count() == rounds
