"""The order list: filters, search (the htmx partial and the plain full page),
pages of 50; and one order's full record with its timeline and provider events."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from topup import orders
from topup.models import Delivery, Package, Price, Product

from tests.web.admin.conftest import OPERATOR, new_order, pay

HX = {"HX-Request": "true"}


def listed(response) -> list[str]:
    """The public ids the results table links to, in order."""
    assert response.status_code == 200, response.get_data(as_text=True)
    return re.findall(r'href="/admin/orders/([A-Za-z0-9_-]+)"', response.get_data(as_text=True))


def ids(*found) -> list[str]:
    return [order.public_id for order in found]


def test_filters_find_the_right_orders(app, operator_client):
    day = datetime(2030, 3, 10, 12)
    usd = new_order(app, coins=70, account="alice_1", created_at=day)
    idr = new_order(app, coins=350, country="ID", currency="IDR", account="budi",
                    created_at=day + timedelta(days=1))
    late = new_order(app, coins=70, account="carol", created_at=day + timedelta(days=5))
    pay(app, usd)
    get = operator_client.get

    assert listed(get("/admin/orders")) == ids(late, idr, usd)  # newest first
    assert listed(get("/admin/orders?status=paid")) == ids(usd)
    assert listed(get("/admin/orders?status=awaiting_payment")) == ids(late, idr)
    gems = Product.create(slug="gems", name="Gems", delivery_backend="sandbox")
    Price.create(package=Package.create(product=gems, quantity=70), currency="USD", amount=100)
    other = new_order(app, slug="gems", created_at=day + timedelta(days=2))
    assert listed(get(f"/admin/orders?product={gems.id}")) == ids(other)
    assert listed(get(f"/admin/orders?product={usd.product_id}")) == ids(late, idr, usd)
    assert listed(get("/admin/orders?product=99")) == []
    assert listed(get(f"/admin/orders?product={gems.id}&status=paid")) == []
    assert listed(get("/admin/orders?method=sandbox")) == ids(late, other, idr, usd)
    assert listed(get("/admin/orders?method=pix")) == []
    assert listed(get("/admin/orders?from=2030-03-11")) == ids(late, other, idr)
    assert listed(get("/admin/orders?to=2030-03-11")) == ids(idr, usd)  # the whole To day
    assert listed(get("/admin/orders?from=2030-03-10&to=2030-03-10")) == ids(usd)
    assert listed(get("/admin/orders?from=2030-03-11&to=2030-03-14&status=awaiting_payment"
                      )) == ids(other, idr)
    assert listed(get(f"/admin/orders?from=2030-03-11&to=2030-03-14&product={gems.id}"
                      )) == ids(other)


def test_search_by_id_prefix_account_and_email(app, operator_client):
    alice = new_order(app, account="alice_1", email="alice@example.com")
    bob = new_order(app, account="bob_2", email="Bobby@Example.org")
    get = operator_client.get
    assert listed(get(f"/admin/orders?q={alice.public_id[:6]}")) == ids(alice)
    assert listed(get("/admin/orders?q=@bob")) == ids(bob)
    assert listed(get("/admin/orders?q=ALICE")) == ids(alice)  # case does not matter
    assert listed(get("/admin/orders?q=bobby@example")) == ids(bob)
    assert listed(get("/admin/orders?q=example")) == ids(bob, alice)
    assert listed(get("/admin/orders?q=%25")) == []  # LIKE wildcards are searched literally
    assert listed(get("/admin/orders?q=_")) == ids(bob, alice)  # both account ids have one
    assert listed(get("/admin/orders?q=nobody")) == []


def test_htmx_gets_the_results_and_a_browser_the_page(app, operator_client):
    alice = new_order(app, account="alice_1")
    new_order(app, account="bob_2")
    partial = operator_client.get("/admin/orders?q=alice", headers=HX)
    assert listed(partial) == ids(alice)
    html = partial.get_data(as_text=True)
    assert html.startswith('<section id="results"') and "<form" not in html
    assert "HX-Request" in partial.headers["Vary"]
    page = operator_client.get("/admin/orders?q=alice").get_data(as_text=True)
    assert '<form class="filters" method="get" action="/admin/orders"' in page
    assert 'value="alice"' in page and '<section id="results"' in page
    # The live search: on input, after 300 ms, swapping the results partial.
    assert 'data-hx-trigger="input changed delay:300ms, search"' in page
    assert 'data-hx-target="#results"' in page
    # The back button (htmx's history cache is off) asks for the whole page.
    restore = operator_client.get("/admin/orders?q=alice",
                                  headers={**HX, "HX-History-Restore-Request": "true"})
    assert "<form class=\"filters\"" in restore.get_data(as_text=True)


def test_pages_of_fifty(app, operator_client):
    start = datetime(2030, 1, 1)
    made = [new_order(app, account=f"buyer_{n}", created_at=start + timedelta(minutes=n))
            for n in range(53)]
    newest_first = ids(*reversed(made))
    first = operator_client.get("/admin/orders?status=awaiting_payment")
    assert listed(first) == newest_first[:50]
    html = first.get_data(as_text=True)
    assert "53 orders" in html and "page 1 of 2" in html
    assert 'href="/admin/orders?status=awaiting_payment&amp;page=2"' in html
    second = operator_client.get("/admin/orders?status=awaiting_payment&page=2")
    assert listed(second) == newest_first[50:]
    assert 'href="/admin/orders?status=awaiting_payment"' in second.get_data(as_text=True)
    assert listed(operator_client.get("/admin/orders?page=9")) == []
    # Every filter survives paging, product 1 included; htmx is told the same address.
    query = "q=buyer&status=awaiting_payment&product=1&method=sandbox&from=2030-01-01&to=2030-01-02"
    hx = operator_client.get(f"/admin/orders?{query}", headers=HX)
    expected = "/admin/orders?status=awaiting_payment&product=1&method=sandbox&from=2030-01-01" \
               "&to=2030-01-02&q=buyer"
    assert hx.headers["HX-Replace-Url"] == expected
    assert f'href="{expected.replace("&", "&amp;")}&amp;page=2"' in hx.get_data(as_text=True)


def test_bad_filters_are_told_not_crashed(operator_client):
    for query, message in [("status=lost", "There is no order status lost."),
                           ("from=2030-13-45", "From must be a date like 2025-01-31."),
                           ("to=yesterday", "To must be a date like 2025-01-31."),
                           ("page=0", "Page must be a whole number"),
                           ("page=abc", "Page must be a whole number"),
                           ("product=-1", "Product must be a whole number"),
                           ("from=2030-02-02&to=2030-02-01",
                            "The From date is after the To date.")]:
        response = operator_client.get(f"/admin/orders?{query}")
        assert response.status_code == 400, query
        assert message in response.get_data(as_text=True), query


def test_the_order_page_shows_everything(app, operator_client, placed):
    paid = pay(app, placed)
    with app.app_context():
        orders.mark_delivery_failed(paid, "reseller timeout", OPERATOR)
    Delivery.update(attempts=3, reference="rs-99").execute()
    page = operator_client.get(f"/admin/orders/{paid.public_id}").get_data(as_text=True)
    payment = paid.latest_payment()
    for expected in (paid.public_id, "@demo_user", "TikTok Coins", "70 coins", "$0.94",
                     "94 USD minor units", payment.provider_ref, "succeeded",
                     "<dt>Attempts</dt><dd>3</dd>", "rs-99", "reseller timeout",
                     f"evt_{payment.provider_ref}", "applied", "Order placed",
                     "Delivery failed: reseller timeout"):
        assert expected in page, expected
    timeline = page[page.index('class="timeline"'):]
    assert re.findall(r'<strong class="who">(.*?)</strong>', timeline) == [
        "buyer", "system", OPERATOR]
    assert "awaiting payment → paid" in timeline and "paid → needs attention" in timeline
