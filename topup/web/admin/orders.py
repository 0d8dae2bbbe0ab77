"""The order list (filters, search, pages) and one order's full record.

The list is one GET form: without JavaScript it submits and the full page
renders; with htmx, typing searches after a pause and only the results swap.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from flask import abort, current_app, render_template, request, url_for
from flask_babel import gettext as _

from topup import orders
from topup.models import Order, OrderEvent, Payment, Product, WebhookEvent
from topup.web.admin import bp, forms, render
from topup.web.admin.allowed import available, refund_route

PER_PAGE = 50
STATUSES = tuple(orders.TRANSITIONS)


@dataclass
class Filters:
    status: str = ""
    product: int | None = None
    method: str = ""
    date_from: date | None = None
    date_to: date | None = None
    q: str = ""
    page: int = 1

    def args(self, **changes) -> dict:
        """The query string that shows these filters (with `changes`), empty ones left out."""
        values = {"status": self.status, "product": self.product, "method": self.method,
                  "from": self.date_from and self.date_from.isoformat(),
                  "to": self.date_to and self.date_to.isoformat(), "q": self.q,
                  "page": self.page, **changes}
        if values["page"] == 1:  # the first page is the address without one
            values["page"] = None
        return {key: value for key, value in values.items() if value is not None and value != ""}


def read_filters(args) -> tuple[Filters, list[str]]:
    """The filters in a query string, and what was wrong with them (those are ignored)."""
    found, errors = Filters(), []
    found.status = args.get("status", "").strip()
    if found.status and found.status not in STATUSES:
        errors.append(_("There is no order status %(status)s.", status=found.status[:40]))
        found.status = ""
    found.method = forms.text(args.get("method"), 64)
    found.q = forms.text(args.get("q"), 100)
    for field, name, label in (("product", "product", _("Product")),
                               ("page", "page", _("Page"))):
        if args.get(name, "").strip():
            try:
                setattr(found, field, forms.integer(args[name], 1, 10**9, label))
            except forms.FormError as error:
                errors.append(str(error))
    for field, name, label in (("date_from", "from", _("From")), ("date_to", "to", _("To"))):
        try:
            setattr(found, field, forms.day(args.get(name), label))
        except forms.FormError as error:
            errors.append(str(error))
    if found.date_from and found.date_to and found.date_from > found.date_to:
        errors.append(_("The From date is after the To date."))
    return found, errors


def search(filters: Filters):
    """The orders these filters select, newest first."""
    query = Order.select(Order, Product).join(Product)
    if filters.status:
        query = query.where(Order.status == filters.status)
    if filters.product:
        query = query.where(Order.product == filters.product)
    if filters.method:
        query = query.where(Order.payment_method == filters.method)
    if filters.date_from:
        query = query.where(Order.created_at >= datetime.combine(filters.date_from, time.min))
    if filters.date_to:
        query = query.where(Order.created_at < datetime.combine(filters.date_to, time.min)
                            + timedelta(days=1))
    if filters.q:
        account = filters.q.removeprefix("@")
        match = Order.public_id.startswith(filters.q) | Order.email.contains(filters.q)
        if account:
            match |= Order.account_id.contains(account)
        query = query.where(match)
    return query.order_by(Order.created_at.desc(), Order.id.desc())


def methods() -> list[str]:
    """Payment methods to filter by: those loaded, and any orders were paid with."""
    used = {method for (method,) in Order.select(Order.payment_method).distinct().tuples()}
    return sorted(used | set(current_app.extensions["topup"].providers))


@bp.get("/orders")
def order_list():
    filters, errors = read_filters(request.args)
    query = search(filters)
    total = query.count()
    pages = max(1, -(-total // PER_PAGE))
    rows = list(query.paginate(filters.page, PER_PAGE))
    response = render("admin/_orders.html", "admin/orders.html", 400 if errors else 200,
                      filters=filters, errors=errors, rows=rows, total=total, pages=pages,
                      statuses=STATUSES, products=list(Product.select().order_by(Product.sort,
                                                                                Product.id)),
                      methods=methods())
    if request.htmx:  # the address shows these results (reload, share); no history per keystroke
        response.headers["HX-Replace-Url"] = url_for("admin.order_list", **filters.args())
    return response


def order_or_404(public_id: str) -> Order:
    order = Order.get_or_none(Order.public_id == public_id[:64])
    if order is None:
        abort(404, _("There is no order %(id)s.", id=public_id[:64]))
    return order


def detail(order: Order) -> dict:
    """Everything the order page shows; the actions module adds its forms' state."""
    registry = current_app.extensions["topup"]
    payments = list(Payment.select().where(Payment.order == order.id).order_by(Payment.id))
    delivery = order.deliveries.first()
    provider = registry.providers.get(order.payment_method)
    return {
        "order": order, "payments": payments, "delivery": delivery,
        "method_name": provider.name if provider else order.payment_method,
        "events": list(OrderEvent.select().where(OrderEvent.order == order.id)
                       .order_by(OrderEvent.id)),
        "webhooks": list(WebhookEvent.select().where(WebhookEvent.order == order.id)
                         .order_by(WebhookEvent.id)),
        "actions": available(order, payments, delivery),
        "refund_route": refund_route(payments),
        "errors": {}, "values": {},
    }


@bp.get("/orders/<public_id>")
def order(public_id):
    found = order_or_404(public_id)
    return render_template("admin/order.html", **detail(found))
