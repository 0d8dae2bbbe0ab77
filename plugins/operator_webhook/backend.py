"""The delivery backend: one signed POST per attempt, the answer mapped to a
DeliveryResult. The receiver dedupes on the order id, so every attempt for an
order sends the same body (only the signature's timestamp changes)."""
from __future__ import annotations

import ipaddress
import json
from functools import cache
from importlib import metadata
from urllib.parse import urlsplit

from flask import current_app

from topup.delivery import AccountInfo, DeliveryBackend, DeliveryResult
from topup.models import OrderEvent
from topup.payments import NotConfigured
from topup.signing import sign
from topup_plugins.operator_webhook import client
from topup_plugins.operator_webhook.model import OperatorWebhookResult, printable, valid_reference


SIGNATURE_HEADER = "Topup-Signature"
CALLBACK_PATH = "/operator-webhook/callback"
RETRYABLE = frozenset({408, 425, 429})  # besides every 5xx
MAX_TIMEOUT = 60  # well inside the worker's lease on a delivery


class OperatorWebhook(DeliveryBackend):
    id = "operator_webhook"
    name = "Operator webhook"

    def __init__(self, settings: dict):
        super().__init__(settings)
        missing = [key for key in ("url", "secret") if not str(settings.get(key) or "").strip()]
        if missing:
            raise NotConfigured(f"operator_webhook needs settings: {', '.join(missing)}")
        self.url = str(settings["url"]).strip()
        check_url(self.url)
        self.secret = str(settings["secret"])
        self.callback_secret = str(settings.get("callback_secret") or self.secret)
        self.timeout = float(settings.get("timeout_seconds") or 10)
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise ValueError("operator_webhook timeout_seconds must be more than 0 "
                             f"and at most {MAX_TIMEOUT}")

    def __repr__(self) -> str:  # never the secrets, nor the URL's path or query
        return f"OperatorWebhook({urlsplit(self.url).hostname!r})"

    def lookup_account(self, product, account_id: str) -> AccountInfo:
        """The operator's system is not asked: every well-formed account is taken."""
        return AccountInfo(account_id, found=True, nickname=None)

    def deliver(self, order) -> DeliveryResult:
        stored = _stored(order.public_id)
        if stored is not None and stored.status == "delivered":  # a callback said so already
            return DeliveryResult("delivered", reference=stored.reference)
        # A failed answer belongs to an earlier attempt (an operator's retry comes here).
        (OperatorWebhookResult.delete()
         .where(OperatorWebhookResult.order_ref == order.public_id,
                OperatorWebhookResult.status == "failed").execute())
        body = request_body(order)
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": f"topup/{_version()}", "Idempotency-Key": order.public_id,
                   SIGNATURE_HEADER: sign(self.secret, body)}
        try:
            answer = client.post(self.url, body, headers, self.timeout)
        except client.Unreachable as error:
            return DeliveryResult("retry", message=str(error))
        return result_for(answer)

    def fetch_status(self, delivery) -> DeliveryResult | None:
        stored = _stored(delivery.order.public_id)
        if stored is None:
            return None
        if stored.status == "delivered":
            return DeliveryResult("delivered", reference=stored.reference)
        return DeliveryResult("failed", message=f"reported failed: {stored.message}"
                              if stored.message else "reported failed, without a message")


def _stored(order_ref: str) -> OperatorWebhookResult | None:
    return OperatorWebhookResult.get_or_none(OperatorWebhookResult.order_ref == order_ref)


def check_url(url: str) -> None:
    """https, or http to this machine; no credentials in the URL (the signature
    is the authentication, and a URL ends up in places a secret must not)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("operator_webhook url must be an https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("operator_webhook url must not contain a user name or password")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValueError("operator_webhook url must use https (plain http only to a loopback host)")


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def request_body(order) -> bytes:
    """The JSON the receiver gets: built from stored facts only, so identical
    for every attempt at the same order."""
    fields = {"id": order.public_id, "product": order.product.slug, "quantity": order.quantity,
              "unit": order.product.unit, "account_id": order.account_id,
              "account_nickname": order.account_nickname, "country": order.country,
              "currency": order.currency, "amount": order.amount}
    paid = (OrderEvent.select(OrderEvent.created_at)
            .where(OrderEvent.order == order.id, OrderEvent.to_status == "paid")
            .order_by(OrderEvent.id).first())
    if paid is not None:
        fields["paid_at"] = paid.created_at.isoformat(timespec="seconds") + "Z"
    return json.dumps({"type": "delivery.requested", "id": order.public_id, "order": fields,
                       "callback_url": callback_url()}, separators=(",", ":")).encode()


def callback_url() -> str | None:
    """Where the receiver confirms a 202 later. The worker has no request, so
    PUBLIC_URL (or the server's own INTERNAL_URL); None when neither is set."""
    base = current_app.config.get("PUBLIC_URL") or current_app.config.get("INTERNAL_URL")
    return str(base).rstrip("/") + CALLBACK_PATH if base else None


def result_for(answer: client.Answer) -> DeliveryResult:
    """The response contract (docs/backends/operator-webhook.md)."""
    status = answer.status
    if status == 202:
        return DeliveryResult("pending")
    if 200 <= status < 300:
        reference = valid_reference(_json(answer.body).get("reference"))
        if reference is None:
            return DeliveryResult("retry", message=f"answered {status} without a reference")
        return DeliveryResult("delivered", reference=reference)
    if 300 <= status < 400:
        return DeliveryResult("failed", message=f"answered {status}, a redirect: redirects are "
                              "not followed, check the operator_webhook url setting")
    if status in RETRYABLE or status >= 500:
        wait = printable(answer.retry_after or "", 40)
        return DeliveryResult("retry", message=f"answered {status}" + (
            f" (Retry-After {wait}; topup retries with its own backoff)" if wait else ""))
    text = printable(answer.body.decode("utf-8", "replace"), 200)
    return DeliveryResult("failed", message=f"answered {status}: {text}" if text
                          else f"answered {status} with an empty body")


def _json(raw: bytes) -> dict:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@cache
def _version() -> str:
    try:
        return metadata.version("topup")
    except metadata.PackageNotFoundError:
        return "dev"
