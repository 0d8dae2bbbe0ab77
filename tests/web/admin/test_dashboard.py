"""The dashboard's numbers are the orders the test made: counts and revenue
per currency for today, 7 and 30 days, the 30-day chart, needs attention
first with its reason, and the reconciler's stuck counts."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from topup import orders
from topup.models import Delivery, Order, utcnow

from tests.web.admin.conftest import OPERATOR, new_order, pay

NOW = datetime(2030, 6, 15, 12, 0)


@pytest.fixture
def frozen(monkeypatch):
    monkeypatch.setattr("topup.web.admin.dashboard.utcnow", lambda: NOW)
    return NOW


def periods(page: str) -> dict:
    found = {}
    for block in page.split('<div class="period">')[1:]:
        label = re.search(r"<h3>(.*?)</h3>", block).group(1)
        revenue = re.search(r'<dd class="revenue">(.*?)</dd>', block).group(1)
        found[label] = (int(re.search(r'class="placed">(\d+)<', block).group(1)),
                        int(re.search(r'class="sold">(\d+)<', block).group(1)),
                        re.findall(r"<span>(.*?)</span>", revenue))
    return found


def test_numbers_match_the_orders(app, operator_client, frozen):
    today = [new_order(app, coins=70, created_at=NOW - timedelta(hours=1)) for _ in range(2)]
    for order in today:
        pay(app, order)  # paid: 2 x $0.94
    new_order(app, coins=350, created_at=NOW - timedelta(hours=2))  # placed, not paid
    idr = new_order(app, coins=70, country="ID", currency="IDR",
                    created_at=NOW - timedelta(days=3))
    pay(app, idr)
    with app.app_context():
        orders.mark_delivered(idr, "r1", OPERATOR)  # delivered: Rp15.000
    older = new_order(app, coins=350, created_at=NOW - timedelta(days=20))
    pay(app, older)  # paid: $4.69
    gone = new_order(app, coins=30, created_at=NOW - timedelta(days=20, hours=1))
    with app.app_context():
        orders.cancel(gone, "test", OPERATOR)  # placed, canceled: not sold
    new_order(app, coins=700, created_at=NOW - timedelta(days=40))  # outside every period

    page = operator_client.get("/admin/").get_data(as_text=True)
    assert periods(page) == {
        "Today": (3, 2, ["$1.88"]),
        "7 days": (4, 3, ["IDR15,000", "$1.88"]),
        "30 days": (6, 4, ["IDR15,000", "$6.57"]),
    }


def test_the_chart_has_one_bar_per_day(app, operator_client, frozen):
    for hours in (1, 2, 3):
        new_order(app, created_at=NOW - timedelta(hours=hours))
    new_order(app, created_at=NOW - timedelta(days=29))
    new_order(app, created_at=NOW - timedelta(days=30))  # just outside the 30 days
    page = operator_client.get("/admin/").get_data(as_text=True)
    svg = re.search(r"<svg.*?</svg>", page, re.S).group(0)
    bars = re.findall(r'<rect class="bar" x="([\d.]+)" y="([\d.]+)" width="[\d.]+" '
                      r'height="([\d.]+)" data-day="([\d-]+)" data-count="(\d+)"', svg)
    assert len(bars) == 30
    assert bars[0][3] == "2030-05-17" and bars[-1][3] == "2030-06-15"
    counts = {day: int(count) for _x, _y, _h, day, count in bars}
    assert counts["2030-06-15"] == 3 and counts["2030-05-17"] == 1
    assert sum(counts.values()) == 4
    heights = {day: float(h) for _x, _y, h, day, _c in bars}
    assert heights["2030-06-15"] == 80 and heights["2030-05-17"] == pytest.approx(80 / 3, 0.01)
    assert heights["2030-06-01"] == 0
    assert "style" not in svg and "<title" in svg


def test_needs_attention_comes_first_with_its_reason(app, operator_client, paid):
    with app.app_context():
        orders.mark_delivery_failed(paid, "account suspended", OPERATOR)
    Delivery.update(status="waiting").execute()  # the stuck counts read these
    page = operator_client.get("/admin/").get_data(as_text=True)
    attention = page.index('id="attention-title"')
    assert attention < page.index('id="sales-title"') and attention < page.index("<svg")
    block = page[attention:page.index("</section>", attention)]
    assert f'href="/admin/orders/{paid.public_id}"' in block
    assert "Delivery failed: account suspended" in block and OPERATOR in block
    assert '<span class="count">1</span>' in block
    stuck = page[page.index('id="stuck-title"'):]
    assert re.search(r"Waiting on a delivery backend</dt><dd>1</dd>", stuck)


def test_overdue_deliveries_are_flagged(app, operator_client, paid):
    Delivery.update(next_attempt_at=utcnow() - timedelta(minutes=10)).execute()
    page = operator_client.get("/admin/").get_data(as_text=True)
    assert re.search(r'<dd class="bad">1 · is a worker running\?</dd>', page)


def test_an_empty_shop(operator_client):
    page = operator_client.get("/admin/").get_data(as_text=True)
    assert "Nothing needs you right now." in page
    assert periods(page)["30 days"] == (0, 0, [])
    assert page.count('<rect class="bar"') == 30
    assert Order.select().count() == 0
