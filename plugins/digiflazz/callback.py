"""POST /digiflazz/callback: Digiflazz's webhook, the fast way to hear a result.

Digiflazz signs the raw body: X-Hub-Signature: sha1=<hex HMAC-SHA1(secret, body)>.
The signature is checked in constant time FIRST; a missing or malformed one is
400, a wrong one 401, and nothing is stored. A verified callback records the
latest status of its ref_id and wakes the waiting delivery; the worker then
reads that status (fetch_status). Replays are harmless: the same status again
changes nothing. A ref_id we never sent is answered 200 (there is nothing for
Digiflazz to retry) and logged.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging

from flask import Blueprint, current_app, request

from topup_plugins.digiflazz.backend import apply_callback

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature"
EVENT_HEADER = "X-Digiflazz-Event"

bp = Blueprint("digiflazz", __name__, url_prefix="/digiflazz")
bp.record_once(lambda state: state.app.extensions["csrf"].exempt(bp))


class BadSignature(ValueError):
    """status: 400 (missing or malformed) or 401 (does not match)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def signature(secret: str, body: bytes) -> str:
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> None:
    if not header:
        raise BadSignature(400, f"missing {SIGNATURE_HEADER}")
    scheme, _, given = header.strip().partition("=")
    if scheme.lower() != "sha1" or not given:
        raise BadSignature(400, f"malformed {SIGNATURE_HEADER}")
    expected = signature(secret, body).encode()
    if not hmac.compare_digest(expected, ("sha1=" + given.lower()).encode("utf-8", "replace")):
        raise BadSignature(401, "signature does not match")


@bp.post("/callback")
def callback():
    backend = current_app.extensions["topup"].backends.get("digiflazz")
    if backend is None or not backend.webhook_secret:
        log.warning("digiflazz callback from %s, but callbacks are not set up (webhook_secret)",
                    request.remote_addr)
        return {"error": "digiflazz callbacks are not set up here"}, 404
    body = request.get_data(cache=False)
    try:
        verify(backend.webhook_secret, body, request.headers.get(SIGNATURE_HEADER))
    except BadSignature as bad:
        log.warning("rejected digiflazz callback from %s: %s", request.remote_addr, bad)
        return {"error": str(bad)}, bad.status
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        log.warning("rejected digiflazz callback from %s: not a JSON object", request.remote_addr)
        return {"error": "not a JSON object"}, 400
    data = payload.get("data")
    if not isinstance(data, dict):
        if "hook_id" in payload:  # the ping Digiflazz sends when the webhook is set
            return {"ok": True, "outcome": "pong"}, 200
        return {"error": "no data object"}, 400
    event = request.headers.get(EVENT_HEADER, "")[:20]
    outcome = apply_callback(data)
    if outcome == "unknown":
        log.warning("digiflazz %s callback for a ref_id we never sent: %r", event,
                    str(data.get("ref_id"))[:40])
        return {"ok": True, "outcome": "ignored"}, 200
    log.info("digiflazz %s callback: %s %s rc %s", event, str(data.get("ref_id"))[:40],
             str(data.get("status"))[:20], str(data.get("rc"))[:8])
    return {"ok": True, "outcome": outcome}, 200
