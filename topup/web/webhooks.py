"""Provider notifications: verified by signature (not CSRF), deduplicated, applied."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, request
from werkzeug.exceptions import HTTPException

from topup import orders
from topup.payments import WebhookRejected
from topup.web.ops import WEBHOOK_REJECTS

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


@bp.post("/<provider_id>")
def receive(provider_id):
    registry = current_app.extensions["topup"]
    provider = registry.providers.get(provider_id)
    if provider is None:
        return {"error": "unknown provider"}, 404
    try:
        events = provider.parse_webhook(request)
    except WebhookRejected as rejected:
        log.warning("rejected %s webhook from %s: %s", provider_id, request.remote_addr, rejected)
        WEBHOOK_REJECTS.labels(provider_id).inc()
        return {"error": "rejected", "reason": str(rejected)}, 400
    except HTTPException:  # e.g. 413: the request's fault, not the plugin's
        raise
    except Exception as exc:  # a provider bug: ask the sender to retry later
        registry.contain(provider_id, exc)
        return {"error": "temporarily unavailable"}, 503
    outcomes = [orders.apply_payment_event(provider_id, event) for event in events]
    if "unknown payment" in outcomes:  # not ours, or not yet: a retry may still apply
        return {"error": "unknown payment", "outcomes": outcomes}, 404
    return {"ok": True, "outcomes": outcomes}, 200
