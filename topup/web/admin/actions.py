"""The operator's buttons on an order: each a plain POST form that calls
topup.orders with the signed-in operator as the actor. A refusal shows the
order page again, the message at its form, with 422."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from topup import orders
from topup.web.admin import bp, forms
from topup.web.admin.allowed import ACTIONS
from topup.web.admin.orders import detail, order_or_404
from topup.web.auth import current_operator


def run(action: str, order, form, actor: str):
    """Call the state machine for one action; OrderRefused passes through."""
    if action == "mark-paid":
        return orders.mark_paid(order, forms.text(form.get("reference"), 500), actor)
    if action == "retry":
        return orders.retry_delivery(order, actor)
    if action == "delivered":
        return orders.mark_delivered(order, forms.text(form.get("reference"), 500), actor,
                                     forms.text(form.get("note"), 500) or None)
    if action == "failed":
        return orders.mark_delivery_failed(order, forms.text(form.get("reason"), 1000), actor)
    if action == "cancel":
        return orders.cancel(order, forms.text(form.get("reason"), 1000), actor)
    if action == "refund":
        return orders.refund(order, actor, forms.text(form.get("reason"), 1000))
    raise LookupError(action)


@bp.post("/orders/<public_id>/<action>")
def act(public_id, action):
    if action not in ACTIONS:
        abort(404, _("There is no such action."))
    order = order_or_404(public_id)
    try:
        done = run(action, order, request.form, current_operator())
    except orders.OrderRefused as refused:
        context = detail(order_or_404(public_id))
        context["errors"] = {action: str(refused)}
        context["values"] = {action: request.form}
        return render_template("admin/order.html", **context), 422
    flash(_("Done: the order is now %(status)s.", status=done.status.replace("_", " ")))
    return redirect(url_for("admin.order", public_id=done.public_id), 303)
