"""The CSV export: the orders of a date range, amounts exact in minor units
and as decimal text, references joined in, and no cell a spreadsheet would
run as a formula."""
from __future__ import annotations

import csv
import io
from datetime import datetime

from topup import orders
from topup.models import Delivery, Product

from tests.web.admin.conftest import OPERATOR, new_order, pay

DAY = datetime(2030, 4, 10, 9, 30)


def rows(response) -> list[dict]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_export_columns_and_amounts(app, operator_client):
    usd = pay(app, new_order(app, coins=350, account="alice_1", created_at=DAY))
    with app.app_context():
        orders.mark_delivered(usd, "reseller-77", OPERATOR)
    idr = new_order(app, coins=70, country="ID", currency="IDR", account="budi",
                    created_at=DAY.replace(day=11, hour=23, minute=59))
    new_order(app, created_at=DAY.replace(day=12))  # after the range
    new_order(app, created_at=DAY.replace(day=9, hour=23))  # before it

    response = operator_client.get("/admin/export.csv?from=2030-04-10&to=2030-04-11")
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == \
        'attachment; filename="orders-2030-04-10-to-2030-04-11.csv"'
    assert response.headers["Cache-Control"] == "no-store"
    first, second = rows(response)
    assert first == {
        "public_id": usd.public_id, "created_at_utc": "2030-04-10 09:30:00",
        "status": "delivered", "product": "TikTok Coins", "quantity": "350",
        "account": "alice_1", "country": "US", "currency": "USD", "amount_minor": "469",
        "amount": "4.69", "fee_minor": "0", "fee": "0.00", "payment_method": "sandbox",
        "provider_ref": f"sbx_{usd.public_id}", "delivery_reference": "reseller-77"}
    assert (second["public_id"], second["currency"], second["amount_minor"], second["amount"],
            second["status"], second["delivery_reference"]) == (
        idr.public_id, "IDR", "1500000", "15000.00", "awaiting_payment", "")


def test_formula_injection_is_defused(app, operator_client):
    Product.update(name="=HYPERLINK(\"http://evil\")").execute()
    order = pay(app, new_order(app, account="@sum", created_at=DAY))
    Delivery.update(reference="+1-555").where(Delivery.order == order.id).execute()
    [row] = rows(operator_client.get("/admin/export.csv?from=2030-04-10&to=2030-04-10"))
    assert row["product"] == "'=HYPERLINK(\"http://evil\")"
    assert row["account"] == "'@sum"
    assert row["delivery_reference"] == "'+1-555"
    assert row["amount"] == "0.94"  # ordinary cells untouched


def test_bad_ranges_are_refused(operator_client):
    for query, message in [("", "Give both dates"), ("from=2030-01-01", "Give both dates"),
                           ("from=2030-01-01&to=soon", "To must be a date like 2025-01-31."),
                           ("from=2030-02-01&to=2030-01-01",
                            "The From date is after the To date.")]:
        response = operator_client.get(f"/admin/export.csv?{query}")
        assert response.status_code == 400, query
        assert message in response.get_data(as_text=True), query


def test_an_empty_range_has_the_header_only(operator_client):
    response = operator_client.get("/admin/export.csv?from=2001-01-01&to=2001-01-31")
    assert response.get_data(as_text=True).splitlines() == [
        "public_id,created_at_utc,status,product,quantity,account,country,currency,"
        "amount_minor,amount,fee_minor,fee,payment_method,provider_ref,delivery_reference"]


def test_the_export_page_has_the_form(operator_client):
    page = operator_client.get("/admin/export").get_data(as_text=True)
    assert 'action="/admin/export.csv"' in page and 'name="from" type="date"' in page
