"""Orders as CSV for the books: GET /admin/export.csv?from=YYYY-MM-DD&to=YYYY-MM-DD.

Amounts come in minor units (exact) and as decimal major-unit text. A cell
that a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets an
apostrophe in front: buyers choose their usernames, operators type references.
"""
from __future__ import annotations

import csv
import io
from datetime import datetime, time, timedelta

from flask import Response, abort, render_template, request
from flask_babel import gettext as _

from topup.models import Delivery, Order, Payment, Product
from topup.web.admin import bp, forms

COLUMNS = ("public_id", "created_at_utc", "status", "product", "quantity", "account",
           "country", "currency", "amount_minor", "amount", "fee_minor", "fee",
           "payment_method", "provider_ref", "delivery_reference")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def period(args) -> tuple:
    """The from/to dates of the query string; a 400 that says what is wrong otherwise."""
    try:
        first = forms.day(args.get("from"), _("From"))
        last = forms.day(args.get("to"), _("To"))
    except forms.FormError as error:
        abort(400, str(error))
    if first is None or last is None:
        abort(400, _("Give both dates: export.csv?from=2025-01-01&to=2025-01-31."))
    if first > last:
        abort(400, _("The From date is after the To date."))
    return first, last


def rows(first, last):
    """One row per order created from `first` to `last` (whole UTC days), oldest first."""
    query = (Order.select(Order, Product).join(Product)
             .where(Order.created_at >= datetime.combine(first, time.min),
                    Order.created_at < datetime.combine(last, time.min) + timedelta(days=1))
             .order_by(Order.created_at, Order.id))
    found = list(query)
    ids = [order.id for order in found]
    payments, deliveries = {}, {}
    for start in range(0, len(ids), 500):  # the latest payment and the delivery of each
        chunk = ids[start:start + 500]
        for payment in Payment.select().where(Payment.order.in_(chunk)).order_by(Payment.id):
            payments[payment.order_id] = payment
        for delivery in Delivery.select().where(Delivery.order.in_(chunk)):
            deliveries[delivery.order_id] = delivery
    for order in found:
        payment, delivery = payments.get(order.id), deliveries.get(order.id)
        yield (order.public_id, order.created_at.strftime("%Y-%m-%d %H:%M:%S"), order.status,
               order.product.name, order.quantity, order.account_id, order.country,
               order.currency, order.amount, order.total.to_decimal(), order.fee,
               order.fee_money.to_decimal(), order.payment_method,
               payment.provider_ref if payment else None,
               delivery.reference if delivery else None)


@bp.get("/export")
def export_page():
    return render_template("admin/export.html")


@bp.get("/export.csv")
def export_csv():
    first, last = period(request.args)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for row in rows(first, last):
        writer.writerow([cell(value) for value in row])
    name = f"orders-{first.isoformat()}-to-{last.isoformat()}.csv"
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{name}"'})
