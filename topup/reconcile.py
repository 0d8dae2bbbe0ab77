"""The reconciler: heal what webhooks and workers missed, and say what is stuck.

Runs in the worker's sweep and as `topup reconcile`. Payments are re-asked
with the provider's fetch_status and its answer goes through the same
orders.apply_payment_event as a webhook, so a late or repeated answer is
harmless. Waiting deliveries are re-asked by the worker itself.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app

from topup import orders
from topup.models import Delivery, Order, Payment, utcnow

log = logging.getLogger(__name__)

ASKABLE = ("started", "pending", "expired")  # "expired" by us: money may still have come
LOOK_BACK = timedelta(days=1)  # how long after an order expired we still ask


def payments(limit: int = 100) -> dict:
    """Re-ask providers about unpaid payments not asked for a while. Returns
    {"asked": n, "applied": n, "errors": n}."""
    registry = current_app.extensions["topup"]
    now = utcnow()
    every = timedelta(seconds=current_app.config["RECONCILE_PAYMENTS_EVERY_SECONDS"])
    due = (Payment.select(Payment, Order).join(Order)
           .where(Payment.status.in_(ASKABLE), Payment.provider_ref.is_null(False),
                  Order.status.in_((orders.AWAITING_PAYMENT, orders.EXPIRED)),
                  Order.expires_at > now - LOOK_BACK,
                  Payment.created_at < now - every,  # the webhook's turn first
                  Payment.checked_at.is_null() | (Payment.checked_at < now - every))
           .order_by(Payment.checked_at.asc(nulls="first"), Payment.id)
           .limit(limit))
    tally = {"asked": 0, "applied": 0, "errors": 0}
    for payment in list(due):  # read first: on SQLite a write while a read is open can fail
        provider = registry.providers.get(payment.provider)
        Payment.update(checked_at=now).where(Payment.id == payment.id).execute()
        if provider is None:
            continue
        tally["asked"] += 1
        try:
            event = provider.fetch_status(payment)
        except Exception as exc:  # the provider is down: ask again next round
            tally["errors"] += 1
            log.warning("reconcile: %s could not tell about payment %s: %s",
                        payment.provider, payment.provider_ref, exc)
            continue
        if event is not None and orders.apply_payment_event(payment.provider, event) == "applied":
            tally["applied"] += 1
            log.info("reconcile: payment %s of order %s: %s", payment.provider_ref,
                     payment.order.public_id, event.kind)
    return tally


def stuck() -> dict:
    """What a person should know about: counts, for `topup reconcile` and the admin."""
    now = utcnow()
    late = now - timedelta(minutes=5)
    return {
        "needs_attention": Order.select().where(Order.status == orders.NEEDS_ATTENTION).count(),
        "waiting_on_backend": Delivery.select().where(Delivery.status == "waiting").count(),
        # Due for minutes and nobody took them: no worker is running.
        "overdue_deliveries": Delivery.select().where(
            Delivery.status == "pending", Delivery.next_attempt_at < late).count(),
    }
