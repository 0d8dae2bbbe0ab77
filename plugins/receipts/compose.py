"""What a receipt says: subject, plain text and a small HTML alternative,
rendered in the order's own locale (the buyer's language at checkout)."""
from __future__ import annotations

from flask import current_app, has_request_context, render_template, url_for
from flask_babel import force_locale, format_decimal
from flask_babel import gettext as _

from topup.models import Delivery
from topup.money import written_as


def order_link(order) -> str | None:
    """The order page's absolute address: PUBLIC_URL when set, else the
    current request's host; None when neither is known (a worker thread)."""
    base = current_app.config.get("PUBLIC_URL")
    if base:
        return f"{base.rstrip('/')}/orders/{order.public_id}"
    if has_request_context():
        return url_for("orders.show", public_id=order.public_id, _external=True)
    return None


def _subject(kind: str, order) -> str:
    names = {"quantity": format_decimal(order.quantity), "product": order.product.name,
             "order": order.public_id[:8]}
    if kind == "paid":
        return _("Your %(quantity)s %(product)s: payment received (order %(order)s)", **names)
    if kind == "delivered":
        return _("Your %(quantity)s %(product)s: delivered (order %(order)s)", **names)
    if kind == "needs_attention":
        return _("Your %(quantity)s %(product)s: we are looking into your order (order %(order)s)",
                 **names)
    return _("Your %(quantity)s %(product)s: refunded (order %(order)s)", **names)


def compose(order, kind: str, link: str | None) -> tuple[str, str, str]:
    """(subject, text, html) for one receipt. The buyer code is asked for at
    sending time, never stored: a backend that raises fails this attempt."""
    registry = current_app.extensions["topup"]
    provider = registry.providers.get(order.payment_method)
    context = {"order": order, "kind": kind, "link": link,
               "payment_name": provider.name if provider else order.payment_method,
               "delivery": None, "buyer_code": None}
    if kind == "delivered":
        context["delivery"] = Delivery.get_or_none(Delivery.order == order.id)
        backend = registry.backends.get(order.product.delivery_backend)
        context["buyer_code"] = backend.buyer_code(order) if backend else None
    # The order's language, written as its country writes money and numbers
    # (es in MX: es_MX); the words come from the language's catalogue.
    with force_locale(written_as(order.locale, order.country)):
        context["subject"] = _subject(kind, order)
        text = render_template(f"receipts/{kind}.txt", **context)
        html = render_template(f"receipts/{kind}.html", **context)
    return context["subject"], text, html
