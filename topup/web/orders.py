"""The order page: the buyer's anchor from Buy until the coins arrive."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from peewee import JOIN

from topup import orders
from topup.db import Prepared
from topup.models import Delivery, Order, Payment, Product
from topup.payments import PaymentAction

bp = Blueprint("orders", __name__, url_prefix="/orders")

POLL_SECONDS = {orders.NEEDS_ATTENTION: 30, "queued": 30}  # others: 2


# The order with its product, latest payment and delivery, in one prepared
# query: the status partial is polled every few seconds by every open order page.
_ORDER_PAGE = Prepared(lambda public_id: (
    Order.select(Order, Product, Payment, Delivery)
    .join(Product).switch(Order)
    .join(Payment, JOIN.LEFT_OUTER).switch(Order)
    .join(Delivery, JOIN.LEFT_OUTER)
    .where(Order.public_id == public_id)
    .order_by(Payment.id.desc())
    .limit(1)))


# Only what the status block shows, for the usual poll (nothing changed):
# (order status, has a payment action, delivery status), as the driver gives them.
_SHOWN_NOW = Prepared(lambda public_id: (
    Order.select(Order.status, Payment.action.is_null(False), Delivery.status)
    .join(Payment, JOIN.LEFT_OUTER).switch(Order)
    .join(Delivery, JOIN.LEFT_OUTER)
    .where(Order.public_id == public_id)
    .order_by(Payment.id.desc())
    .limit(1)))


def _order_or_404(public_id: str) -> Order:
    order = _ORDER_PAGE.first(public_id[:64])
    if order is None:
        abort(404, _("There is no order at this address. Check the link you were given."))
    return order


def _joined(order: Order, name: str):
    """A LEFT OUTER JOINed row, or None when there was none (peewee then gives
    an empty instance)."""
    row = getattr(order, name, None)
    return row if row is not None and row.id is not None else None


def _shown(status: str, has_action: bool, delivery_status: str | None) -> str:
    """What the status block shows: the status, "preparing" while an unpaid
    order has no payment action yet (its payment is still being started), or
    "queued" while its delivery waits on the backend (an operator, a reseller)."""
    if status == orders.AWAITING_PAYMENT and not has_action:
        return "preparing"
    if status == orders.DELIVERING and delivery_status == "waiting":
        return "queued"
    return status


def _context(order: Order) -> dict:
    g.buyer_country = order.country  # money written as the order's country writes it
    payment, delivery = _joined(order, "payment"), _joined(order, "delivery")
    action = PaymentAction.from_json(payment.action) if payment and payment.action else None
    provider = current_app.extensions["topup"].providers.get(order.payment_method)
    shown = _shown(order.status, action is not None, delivery.status if delivery else None)
    return {"order": order, "payment_name": provider.name if provider else order.payment_method,
            "payment": payment, "action": action, "delivery": delivery,
            "shown": shown, "final": order.status in orders.FINAL,
            "buyer_code": (current_app.extensions["topup"].buyer_code(order)
                           if order.status == orders.DELIVERED else None),
            "poll_seconds": POLL_SECONDS.get(shown, 2)}


@bp.get("/<public_id>")
def show(public_id):
    order = _order_or_404(public_id)
    response = render_template("orders/order.html", **_context(order))
    return response, 200, {"Cache-Control": "no-store"}


def shown_now(public_id: str) -> str | None:
    """What the order's status block would show now (see _shown), or None if
    there is no such order: one narrow query, for the usual poll."""
    now = _SHOWN_NOW.row(public_id[:64])
    return _shown(*now) if now is not None else None


@bp.get("/<public_id>/live")
def live(public_id):
    """The status block, for htmx polling. While what the page shows (`seen`)
    is still current, topup.web.polls answers 204 (nothing to swap) before
    this view is reached."""
    headers = {"Cache-Control": "no-store", "Vary": "HX-Request"}
    order = _order_or_404(public_id)
    if not request.htmx:
        return redirect(url_for("orders.show", public_id=order.public_id), 303), headers
    context = _context(order)
    return render_template("orders/_live.html", **context), 200, headers
