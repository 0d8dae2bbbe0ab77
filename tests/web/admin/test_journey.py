"""The operator's first day, from the README alone: sign in with a one-time
link, change a price, see a buyer's Pix order arrive, mark it paid when the
money shows in the bank, watch it deliver, export the day's CSV."""
from __future__ import annotations

import csv
import io

from topup import worker
from topup.models import Order, Package, Price, utcnow

import pytest

from tests.conftest import buy
from tests.web.admin.conftest import post, sign_in


@pytest.fixture
def with_pix(config):
    config["PLUGINS"]["pix"] = {"key": "shop@example.com", "merchant_name": "Coin Shop",
                                "merchant_city": "SAO PAULO"}


def test_a_new_operators_first_day(with_pix, app, runner):
    operator = sign_in(app.test_client(), runner)
    buyer = app.test_client()

    # A price: 70 coins for R$ 5,49 from now on.
    pack = Package.get(Package.quantity == 70)
    form = {"quantity": "70", "sort": str(pack.sort), "enabled": "on"}
    for row in Price.select().where(Price.package == pack):
        form[f"price-{row.currency}"] = str(row.money.to_decimal())
    form["price-BRL"] = "5.49"
    assert post(operator, f"/admin/catalog/packages/{pack.id}", form).status_code == 303

    # A buyer in Brazil pays with Pix: the order waits for the money.
    placed = buy(buyer, country="BR", account="@cliente.br", method="pix")
    assert placed.status_code == 303
    order = Order.get(Order.public_id == placed.headers["Location"].rsplit("/", 1)[1])
    assert (order.amount, order.currency, order.status) == (549, "BRL", "awaiting_payment")

    # The operator sees it arrive, and opens it.
    listing = operator.get("/admin/orders?q=cliente").get_data(as_text=True)
    assert order.public_id in listing
    assert "R$" in operator.get(f"/admin/orders/{order.public_id}").get_data(as_text=True)

    # The money shows in the bank: marked paid with the bank's reference.
    answer = post(operator, f"/admin/orders/{order.public_id}/mark-paid", {"reference": "E2E-PIX-77"})
    assert answer.status_code == 303
    assert Order.get_by_id(order.id).status == "paid"

    # The worker delivers; the buyer's page and the admin both say so.
    assert worker.deliver_once(app)
    assert Order.get_by_id(order.id).status == "delivered"
    assert "Delivered" in buyer.get(f"/orders/{order.public_id}").get_data(as_text=True)
    detail = operator.get(f"/admin/orders/{order.public_id}").get_data(as_text=True)
    assert "E2E-PIX-77" in detail and "ops@example.com" in detail

    # The day's CSV for the accountant.
    today = utcnow().date().isoformat()
    export = operator.get(f"/admin/export.csv?from={today}&to={today}")
    assert export.status_code == 200 and "attachment" in export.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    [row] = [row for row in rows if order.public_id in row.values()]
    assert "549" in row.values() and "5.49" in row.values() and "delivered" in row.values()
