"""Manual fulfilment: paid orders wait in the operator's queue.

The honest path for TikTok Coins today (no public API credits coins): the
worker hands each paid order to this backend, which answers "pending" and
tells the operator (an e-mail, a signed webhook, or both, if configured).
The operator credits the account and marks the order delivered (or failed)
with `topup order delivered|failed` or in the admin; both go through
topup.orders, so the buyer's page and receipt follow.

Settings (PLUGINS["manual"]): notify_email, notify_url + notify_secret.
"""
from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import timedelta

from flask import current_app
from peewee import CharField, DateTimeField, IntegerField, TextField

from topup import hookimpl, mail, signing
from topup.delivery import AccountInfo, DeliveryBackend, DeliveryResult
from topup.models import BaseModel, utcnow

log = logging.getLogger(__name__)

MAX_NOTIFY_ATTEMPTS = 10
SIGNATURE_HEADER = "Topup-Signature"


class ManualTask(BaseModel):
    """One per order handed to the operator: whether they have been told yet."""
    order_ref = CharField(unique=True)
    notified_at = DateTimeField(null=True)
    notify_attempts = IntegerField(default=0)
    last_error = TextField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "manual_task"


class ManualFulfilment(DeliveryBackend):
    id = "manual"
    name = "Manual fulfilment"

    def __init__(self, settings: dict):
        super().__init__(settings)
        if settings.get("notify_url") and not settings.get("notify_secret"):
            raise ValueError("manual: notify_url needs notify_secret to sign its requests")

    def lookup_account(self, product, account_id: str) -> AccountInfo:
        """No API to ask: the buyer's typed username is what the operator credits."""
        return AccountInfo(account_id, found=True)

    def deliver(self, order) -> DeliveryResult:
        ManualTask.insert(order_ref=order.public_id).on_conflict_ignore().execute()
        notify(self.settings, ManualTask.get(ManualTask.order_ref == order.public_id), order)
        return DeliveryResult("pending", message="waiting for the operator")


def notify(settings: dict, task: ManualTask, order) -> None:
    """Tell the operator about new work, once per order; failures are retried by housekeeping."""
    if task.notified_at is not None or not (settings.get("notify_email") or settings.get("notify_url")):
        return
    try:
        if settings.get("notify_email") and mail.enabled():
            mail.send(settings["notify_email"],
                      f"To deliver: {order.quantity} {order.product.unit} to {order.account_id}",
                      _describe(order), headers={"Auto-Submitted": "auto-generated"})
        if settings.get("notify_url"):
            _post(settings, order)
    except Exception as exc:  # the order still waits in the queue; tell later
        (ManualTask.update(notify_attempts=ManualTask.notify_attempts + 1,
                           last_error=f"{type(exc).__name__}: {exc}"[:500])
         .where(ManualTask.id == task.id).execute())
        log.warning("manual: could not notify the operator about order %s: %s",
                    order.public_id, type(exc).__name__)
        return
    ManualTask.update(notified_at=utcnow(), last_error=None).where(ManualTask.id == task.id).execute()


def _describe(order) -> str:
    return (f"Order {order.public_id} is paid and waits for you.\n\n"
            f"Credit: {order.quantity} {order.product.unit} ({order.product.name})\n"
            f"Account: {order.account_id}\n"
            f"Paid: {order.total.amount} {order.currency} (minor units) by {order.payment_method}\n\n"
            f"When done: topup order delivered {order.public_id} --reference <what you credited>\n"
            f"If you cannot: topup order failed {order.public_id} --reason <why>\n")


def _post(settings: dict, order) -> None:
    body = json.dumps({"type": "delivery.waiting", "id": order.public_id,
                       "product": order.product.slug, "quantity": order.quantity,
                       "account_id": order.account_id}, separators=(",", ":")).encode()
    request = urllib.request.Request(settings["notify_url"], data=body, method="POST", headers={
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signing.sign(settings["notify_secret"], body)})
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read(1024)


@hookimpl
def housekeeping():
    """Retry operator notifications that failed (with the SMTP or webhook down)."""
    backend = current_app.extensions["topup"].backends.get(ManualFulfilment.id)
    if backend is None:
        return
    from topup.models import Order

    due = (ManualTask.select()
           .where(ManualTask.notified_at.is_null(), ManualTask.notify_attempts > 0,
                  ManualTask.notify_attempts < MAX_NOTIFY_ATTEMPTS,
                  ManualTask.created_at > utcnow() - timedelta(days=1)))
    for task in list(due):  # read first: notify() writes
        order = Order.get_or_none(Order.public_id == task.order_ref)
        if order is not None:
            notify(backend.settings, task, order)


@hookimpl
def register_delivery_backends():
    return [ManualFulfilment]


@hookimpl
def register_models():
    return [ManualTask]
