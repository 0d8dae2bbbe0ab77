"""The signed-in buyer's page: their orders, matched by the e-mail address
they gave at checkout, and the usernames they topped up, to buy for again.
Signing in is optional; guest checkout stays the default."""
from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, url_for
from flask_babel import lazy_gettext as _l
from peewee import fn

from topup.models import Order, Product
from topup.web.auth import current_session

bp = Blueprint("account", __name__)

SHOWN = 100  # orders on the page, newest first
STATUS = {
    "awaiting_payment": _l("Waiting for payment"), "paid": _l("Paid"),
    "delivering": _l("Sending"), "delivered": _l("Delivered"),
    "expired": _l("Payment time ran out"), "failed": _l("Payment didn't go through"),
    "needs_attention": _l("We are checking it"), "refunded": _l("Refunded"),
    "canceled": _l("Canceled"),
}
PRIVATE = {"Cache-Control": "private, no-store"}


def orders_for(email: str) -> list[Order]:
    """Orders whose checkout e-mail is this address (compared case-insensitively)."""
    return list(Order.select(Order, Product).join(Product)
                .where(fn.LOWER(Order.email) == email.strip().lower())
                .order_by(Order.created_at.desc(), Order.id.desc()).limit(SHOWN))


def accounts_in(orders: list[Order]) -> list[Order]:
    """The newest order for each (product, username): what "buy again" fills in."""
    seen, newest = set(), []
    for order in orders:
        if (order.product_id, order.account_id) not in seen:
            seen.add((order.product_id, order.account_id))
            newest.append(order)
    return newest


@bp.get("/account")
def show():
    signed_in = current_session()
    if signed_in is None:
        return redirect(url_for("account.sign_in"))
    has_email = not signed_in.subject.startswith("sub:")
    orders = orders_for(signed_in.subject) if has_email else []
    html = render_template("account/account.html", subject=signed_in.subject,
                           operator=signed_in.role == "operator", has_email=has_email,
                           orders=orders, accounts=accounts_in(orders), status=STATUS)
    return html, 200, PRIVATE


@bp.get("/account/sign-in")
def sign_in():
    if current_session() is not None:
        return redirect(url_for("account.show"))
    providers = current_app.extensions.get("topup.oidc_providers", {})
    return render_template("account/sign_in.html", providers=providers)
