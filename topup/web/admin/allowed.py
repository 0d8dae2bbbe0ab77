"""Which operator actions an order's state allows, so the page offers only
those. topup.orders checks again under the row lock and has the last word."""
from __future__ import annotations

from flask import current_app

from topup import orders

# In the order the page shows them.
ACTIONS = ("mark-paid", "retry", "delivered", "failed", "cancel", "refund")


def available(order, payments, delivery) -> list[str]:
    status = order.status
    received = any(payment.status == "succeeded" for payment in payments)
    refunded = any(payment.status == "refunded" for payment in payments)
    allowed = set()
    if delivery is None and not refunded and (
            orders.PAID in orders.TRANSITIONS[status]
            or status in (orders.EXPIRED, orders.FAILED, orders.CANCELED)):
        allowed.add("mark-paid")
    if status == orders.NEEDS_ATTENTION and delivery is not None and delivery.status != "done":
        allowed.add("retry")
    if status in (orders.PAID, orders.DELIVERING, orders.NEEDS_ATTENTION):
        allowed.add("delivered")
    if status in (orders.PAID, orders.DELIVERING):
        allowed.add("failed")
    if status in (orders.AWAITING_PAYMENT, orders.NEEDS_ATTENTION) and not received:
        allowed.add("cancel")
    if orders.REFUNDED in orders.TRANSITIONS[status] and received:
        allowed.add("refund")
    return [action for action in ACTIONS if action in allowed]


def refund_route(payments) -> str | None:
    """The provider's name when a refund goes through it; None: recorded by hand."""
    providers = current_app.extensions["topup"].providers
    for payment in sorted(payments, key=lambda p: p.id, reverse=True):
        if payment.status == "succeeded":
            provider = providers.get(payment.provider)
            return provider.name if provider is not None and provider.supports_refund else None
    return None
