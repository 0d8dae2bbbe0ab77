"""The order page: summary, payment link, live status (htmx polling and no-JS refresh)."""
from __future__ import annotations

import html as htmllib
import re
from datetime import timedelta

import pytest

from topup import orders
from topup.models import Order, utcnow
from topup.worker import deliver_once

from tests.conftest import package_id, place_order, sandbox_event, signed_headers
from tests.web import HX, body, is_full_page, visible

POLLING = re.compile(r'(?:data-)?hx-trigger="every (\d+)s"')
META_REFRESH = re.compile(r'<noscript><meta http-equiv="refresh" content="(\d+)"></noscript>')


def notify(client, order, kind="succeeded"):
    payload = sandbox_event(order, kind)
    response = client.post("/webhooks/sandbox", data=payload, headers=signed_headers(payload))
    assert response.status_code == 200, response.get_data(as_text=True)


def reload(order) -> Order:
    return Order.get_by_id(order.id)


def delivered_order(client, app) -> Order:
    order = place_order(client)
    notify(client, order)
    assert deliver_once(app)
    order = reload(order)
    assert order.status == orders.DELIVERED
    return order


def try_again_link(html: str) -> str:
    match = re.search(r'<a [^>]*href="([^"]+)"[^>]*>\s*Try again\s*</a>', html)
    assert match, "no Try again link"
    return htmllib.unescape(match.group(1))


def test_unknown_order_is_a_human_404(client):
    response = client.get("/orders/not-a-real-order-id-at-all")
    assert response.status_code == 404
    text = visible(response)
    assert "There is no order at this address." in text and "Check the link" in text
    assert is_full_page(body(response))
    assert client.get("/orders/" + "x" * 5000).status_code == 404
    assert client.get("/orders/nope/live?seen=paid", headers=HX).status_code == 404


def test_order_page_summarises_the_order(client):
    order = place_order(client, account="@Maria.Santos", country="ID", coins=350)
    response = client.get(f"/orders/{order.public_id}")
    assert response.status_code == 200
    text = visible(response)
    assert "Your order" in text
    assert "350 coins" in text
    assert "@maria.santos (Maria Santos)" in text
    assert "Rp75.000" in text  # English, with the money written as in Indonesia (en_ID)
    assert "Sandbox (test payment)" in text
    assert order.public_id in text
    assert "Waiting for your payment" in text
    assert "Keep this page" in text


def test_order_page_has_the_pay_link(client):
    order = place_order(client)
    response = client.get(f"/orders/{order.public_id}")
    html = body(response)
    payment = order.latest_payment()
    link = re.search(r'<a [^>]*href="(/sandbox/checkout/[^"]+)"[^>]*>([^<]+)</a>', html)
    assert link, "no Pay link"
    assert link.group(1) == f"/sandbox/checkout/{payment.provider_ref}"
    assert link.group(2).strip() == "Pay $0.94"
    checkout = client.get(link.group(1))
    assert checkout.status_code == 200
    assert "$0.94" in visible(checkout) and "Approve payment" in visible(checkout)


def test_order_page_is_never_cached(client):
    order = place_order(client)
    response = client.get(f"/orders/{order.public_id}")
    assert "no-store" in response.headers["Cache-Control"]
    assert '<meta name="robots" content="noindex">' in body(response)
    live = client.get(f"/orders/{order.public_id}/live?seen=paid", headers=HX)
    assert "no-store" in live.headers["Cache-Control"]


def test_live_is_204_while_nothing_changed_then_the_partial(client):
    order = place_order(client)
    url = f"/orders/{order.public_id}/live?seen=awaiting_payment"
    for _ in range(3):
        response = client.get(url, headers=HX)
        assert response.status_code == 204
        assert response.get_data() == b""
        assert "HX-Request" in response.headers.get("Vary", "")
    notify(client, order)
    response = client.get(url, headers=HX)
    assert response.status_code == 200
    html = body(response)
    assert not is_full_page(html)
    assert html.lstrip().startswith('<section id="live"')
    assert "Paid" in visible(html) and "sending your coins" in visible(html)
    assert "HX-Request" in response.headers.get("Vary", "")
    # the new partial polls from the new status on
    assert "seen=paid" in html
    assert client.get(f"/orders/{order.public_id}/live?seen=paid", headers=HX).status_code == 204


def test_live_without_htmx_redirects_to_the_order_page(client):
    order = place_order(client)
    response = client.get(f"/orders/{order.public_id}/live?seen=awaiting_payment")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/orders/{order.public_id}"


def test_an_open_order_page_polls_and_refreshes_without_javascript(client):
    order = place_order(client)
    html = body(client.get(f"/orders/{order.public_id}"))
    poll = POLLING.search(html)
    assert poll and poll.group(1) == "2"
    assert f"/orders/{order.public_id}/live?seen=awaiting_payment" in html
    refresh = META_REFRESH.search(html)
    assert refresh and int(refresh.group(1)) > 0
    assert f'<noscript><p><a href="/orders/{order.public_id}">Refresh</a></p></noscript>' in html


def test_a_paid_order_page_still_polls(client):
    order = place_order(client)
    notify(client, order)
    html = body(client.get(f"/orders/{order.public_id}"))
    assert POLLING.search(html) and META_REFRESH.search(html)
    assert "seen=paid" in html


def test_a_delivered_order_page_neither_polls_nor_refreshes(client, app):
    order = delivered_order(client, app)
    response = client.get(f"/orders/{order.public_id}")
    html = body(response)
    assert not POLLING.search(html) and "hx-trigger" not in html
    assert 'http-equiv="refresh"' not in html
    assert "/live" not in html
    text = visible(html)
    assert "Delivered" in text
    assert "70 coins were added to @demo_user." in text
    assert re.search(r"Reference: SBX-\d+", text)
    assert "Pay $0.94" not in text


@pytest.fixture
def failed_order(client) -> Order:
    """A 350-coin order in Brazil for @Maria.Santos whose payment failed."""
    order = place_order(client, country="BR", account="@Maria.Santos", coins=350)
    notify(client, order, "failed")
    order = reload(order)
    assert order.status == orders.FAILED
    return order


def test_a_failed_order_page_neither_polls_nor_refreshes_and_offers_to_try_again(
        client, failed_order):
    html = body(client.get(f"/orders/{failed_order.public_id}"))
    assert not POLLING.search(html) and 'http-equiv="refresh"' not in html
    text = visible(html)
    assert "Payment didn't go through" in text
    assert "No money was taken for this order." in text
    link = try_again_link(html)
    assert link.startswith("/tiktok-coins?")
    for part in ("country=BR", "account=maria.santos", f"package={package_id(350)}",
                 "method=sandbox"):
        assert part in link, (part, link)


def test_try_again_prefills_the_product_page(client, failed_order):
    link = try_again_link(body(client.get(f"/orders/{failed_order.public_id}")))
    response = client.get(link)
    assert response.status_code == 200
    html = body(response)
    assert '<option value="BR" selected>' in html
    assert 'name="account" value="maria.santos"' in html
    assert re.search(rf'name="package" value="{package_id(350)}" checked', html)
    assert re.search(r'name="method" value="sandbox" checked', html)
    assert "✓ Maria Santos" in visible(response)
    # and buying from it works straight away
    tokens = {"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', html).group(1),
              "idempotency_key": re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)}
    again = client.post("/tiktok-coins", data={**tokens, "country": "BR", "account": "maria.santos",
                                               "package": str(package_id(350)),
                                               "method": "sandbox", "intent": "buy"})
    assert again.status_code == 303
    assert Order.select().count() == 2


def test_an_expired_order_says_so_and_offers_to_try_again(client, app):
    order = place_order(client)
    Order.update(expires_at=utcnow() - timedelta(seconds=1)).where(Order.id == order.id).execute()
    with app.app_context():
        assert orders.expire_overdue() == 1
    html = body(client.get(f"/orders/{order.public_id}"))
    assert "Payment time ran out" in visible(html)
    assert try_again_link(html).startswith("/tiktok-coins?")
    assert not POLLING.search(html)


def test_needs_attention_polls_slowly_and_tells_the_buyer_not_to_pay_again(client):
    order = place_order(client)
    payload = sandbox_event(order, amount=1)  # paid the wrong amount
    client.post("/webhooks/sandbox", data=payload, headers=signed_headers(payload))
    assert reload(order).status == orders.NEEDS_ATTENTION
    html = body(client.get(f"/orders/{order.public_id}"))
    assert "You do not need to pay again" in visible(html)
    assert POLLING.search(html).group(1) == "30"


@pytest.mark.parametrize("seen", [None, "", "paid", "delivered", "<script>"])
def test_live_answers_the_current_status_when_seen_is_missing_or_differs(client, seen):
    order = place_order(client)
    query = {} if seen is None else {"seen": seen}
    response = client.get(f"/orders/{order.public_id}/live", query_string=query, headers=HX)
    assert response.status_code == 200
    assert "Waiting for your payment" in visible(response)
    assert "seen=awaiting_payment" in body(response)  # polls on from what it shows now
    assert "<script>" not in response.get_data(as_text=True)  # what was sent is not echoed


def test_a_payment_action_arriving_late_is_swapped_in(client):
    from topup.models import Payment

    order = place_order(client)
    payment = order.latest_payment()
    action = payment.action
    Payment.update(action=None).where(Payment.id == payment.id).execute()
    html = body(client.get(f"/orders/{order.public_id}"))
    assert "Preparing your payment" in visible(html)
    assert "seen=preparing" in html and POLLING.search(html)
    url = f"/orders/{order.public_id}/live?seen=preparing"
    assert client.get(url, headers=HX).status_code == 204
    Payment.update(action=action).where(Payment.id == payment.id).execute()
    response = client.get(url, headers=HX)
    assert response.status_code == 200
    assert "Pay $0.94" in visible(response)
    assert "seen=awaiting_payment" in body(response)
