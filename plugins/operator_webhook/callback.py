"""POST /operator-webhook/callback: the receiver confirms a delivery it
accepted with 202. The signature is checked FIRST; then the answer is stored
(the latest per order) and the waiting delivery woken, so the worker asks
fetch_status at once. Order status is left to topup.orders."""
from __future__ import annotations

import json
import logging

from flask import Blueprint, current_app, request

from topup import orders
from topup.db import database
from topup.models import Delivery, Order, utcnow
from topup.signing import SignatureError, verify
from topup_plugins.operator_webhook.backend import CALLBACK_PATH, SIGNATURE_HEADER, OperatorWebhook
from topup_plugins.operator_webhook.model import (ORDER_ID, OperatorWebhookResult, printable,
                                                  valid_reference)

log = logging.getLogger(__name__)

MAX_MESSAGE = 500

bp = Blueprint("operator_webhook", __name__, url_prefix=CALLBACK_PATH.rsplit("/", 1)[0])
bp.record_once(lambda state: state.app.extensions["csrf"].exempt(bp))


def _plain(message: str, status: int):
    return message + "\n", status, {"Content-Type": "text/plain; charset=utf-8"}


@bp.post("/callback")
def callback():
    backend = current_app.extensions["topup"].backends.get(OperatorWebhook.id)
    if not isinstance(backend, OperatorWebhook):
        return _plain("operator webhook delivery is not set up here", 404)
    raw = request.get_data(cache=False)
    try:
        verify(backend.callback_secret, raw, request.headers.get(SIGNATURE_HEADER),
               header_name=SIGNATURE_HEADER)
    except SignatureError as error:
        log.warning("refused operator webhook callback from %s: %s", request.remote_addr, error)
        return _plain(f"refused: {error}", 400)
    try:
        body = json.loads(raw)
    except ValueError:
        return _plain("malformed JSON", 400)
    if not isinstance(body, dict):
        return _plain("the body must be a JSON object", 400)
    order_id, status = body.get("id"), body.get("status")
    if not isinstance(order_id, str) or not ORDER_ID.fullmatch(order_id):
        return _plain("id must be the order id topup sent", 400)
    if status not in ("delivered", "failed"):
        return _plain('status must be "delivered" or "failed"', 400)
    reference = valid_reference(body.get("reference"))
    if status == "delivered" and reference is None:
        return _plain("a delivered callback needs a reference (1-100 printable characters)", 400)
    message = body.get("message")
    message = (printable(message, MAX_MESSAGE) if isinstance(message, str) else "") or None
    delivery = (Delivery.select(Delivery.id, Delivery.order).join(Order)
                .where(Order.public_id == order_id, Delivery.backend == OperatorWebhook.id)
                .first())
    if delivery is None:
        return _plain("no delivery for this order id", 404)
    with database.atomic():
        (OperatorWebhookResult
         .insert(order_ref=order_id, status=status, reference=reference, message=message)
         .on_conflict(conflict_target=[OperatorWebhookResult.order_ref],
                      update={OperatorWebhookResult.status: status,
                              OperatorWebhookResult.reference: reference,
                              OperatorWebhookResult.message: message,
                              OperatorWebhookResult.received_at: utcnow()})
         .execute())
    woken = orders.wake_delivery(order_id)
    log.info("operator webhook callback: order #%d %s%s", delivery.order_id, status,
             "" if woken else " (its delivery was not waiting)")
    return {"ok": True}, 200
