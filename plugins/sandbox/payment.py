"""Sandbox payments: the buyer approves or declines on a fake checkout page,
and the sandbox then notifies the shop the way a real provider does: a signed
webhook POSTed over HTTP, retried with backoff until it is answered 2xx."""
from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from flask import Blueprint, abort, redirect, render_template, request, url_for
from peewee import CharField, DateTimeField, IntegerField

from topup import hookimpl
from topup.models import BaseModel, utcnow
from topup.money import Money
from topup.payments import EXTERNAL_ID, PaymentAction, PaymentEvent, PaymentProvider, WebhookRejected
from topup_plugins.sandbox import signing

log = logging.getLogger(__name__)

RETRY_DELAYS = (0, 1, 2, 5, 10, 30, 60)  # seconds before each webhook attempt


class SandboxCheckout(BaseModel):
    """The sandbox provider's own record of a payment (its side of the world)."""
    ref = CharField(unique=True)
    order_ref = CharField()
    amount = IntegerField()
    currency = CharField(max_length=3)
    status = CharField(default="open")  # open | approved | declined
    return_url = CharField()
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()  # like a hosted checkout session, it closes with the order

    @property
    def expired(self) -> bool:
        return self.status == "open" and self.expires_at < utcnow()

    class Meta:
        table_name = "sandbox_checkout"

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)


class SandboxPayment(PaymentProvider):
    id = "sandbox"
    name = "Sandbox (test payment)"
    supports_refund = False

    def __init__(self, settings: dict):
        super().__init__(settings)
        if not settings.get("webhook_secret"):
            raise ValueError("sandbox_payment needs a webhook_secret setting")
        self.secret = settings["webhook_secret"]

    def start(self, order, return_url: str) -> PaymentAction:
        checkout = SandboxCheckout.create(ref="sbx_" + secrets.token_urlsafe(12),
                                          order_ref=order.public_id, amount=order.amount,
                                          currency=order.currency, return_url=return_url,
                                          expires_at=order.expires_at)
        return PaymentAction(kind="redirect", provider_ref=checkout.ref,
                             url=url_for("sandbox.checkout", ref=checkout.ref))

    def parse_webhook(self, request) -> list[PaymentEvent]:
        body = request.get_data(cache=False)
        try:
            signing.verify(self.secret, body, request.headers.get(signing.HEADER))
        except signing.SignatureError as error:
            raise WebhookRejected(str(error)) from None
        try:
            event = json.loads(body)
            data = event["data"]
            event_id, payment_ref = event["id"], data["payment_id"]
            if not all(isinstance(v, str) and EXTERNAL_ID.fullmatch(v) for v in (event_id, payment_ref)):
                raise ValueError("ids must be short printable identifiers")
            return [PaymentEvent(event_id=event_id, kind=event["type"].split(".", 1)[1],
                                 payment_ref=payment_ref,
                                 amount=Money(data["amount"], str(data["currency"])))]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
            raise WebhookRejected(f"malformed event: {error}") from None

    def fetch_status(self, payment) -> PaymentEvent | None:
        checkout = SandboxCheckout.get_or_none(SandboxCheckout.ref == payment.provider_ref)
        if checkout is None or checkout.status == "open":
            return None
        kind = "succeeded" if checkout.status == "approved" else "failed"
        return PaymentEvent(event_id=f"evt_{checkout.ref}_{kind}", kind=kind,
                            payment_ref=checkout.ref, amount=checkout.money)

    def event_for(self, checkout: SandboxCheckout) -> bytes:
        kind = "succeeded" if checkout.status == "approved" else "failed"
        return json.dumps({
            "id": f"evt_{checkout.ref}_{kind}", "type": f"payment.{kind}",
            "created": int(time.time()),
            "data": {"payment_id": checkout.ref, "reference": checkout.order_ref,
                     "amount": checkout.amount, "currency": checkout.currency},
        }).encode()


def send_webhook(url: str, secret: str, body: bytes, delays=RETRY_DELAYS) -> bool:
    """POST body, signed afresh at each attempt, until a 2xx answer. True if delivered."""
    for attempt, delay in enumerate(delays, 1):
        time.sleep(delay)
        req = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", signing.HEADER: signing.sign(secret, body)})
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                if 200 <= response.status < 300:
                    return True
        except urllib.error.HTTPError as error:
            log.warning("sandbox webhook attempt %d: HTTP %s", attempt, error.code)
        except OSError as error:
            log.warning("sandbox webhook attempt %d: %s", attempt, error)
    log.error("sandbox webhook to %s given up after %d attempts", url, len(delays))
    return False


bp = Blueprint("sandbox", __name__, url_prefix="/sandbox",
               template_folder=str(Path(__file__).parent / "templates"))


def _provider() -> SandboxPayment:
    from flask import current_app

    return current_app.extensions["topup"].providers["sandbox"]


def _own_url(path: str) -> str:
    """This server's own address (set by `topup serve`), not the request's Host
    header, so a forged Host cannot aim the signed webhook elsewhere."""
    from flask import current_app

    base = current_app.config.get("INTERNAL_URL") or request.host_url
    return base.rstrip("/") + path


@bp.get("/checkout/<ref>")
def checkout(ref):
    checkout = SandboxCheckout.get_or_none(SandboxCheckout.ref == ref[:64])
    if checkout is None:
        abort(404, "This sandbox checkout does not exist.")
    return render_template("sandbox/checkout.html", checkout=checkout)


@bp.post("/checkout/<ref>")
def decide(ref):
    decision = request.form.get("decision")
    if decision not in ("approve", "decline"):
        abort(400, "Choose Approve payment or Decline payment.")
    new = "approved" if decision == "approve" else "declined"
    changed = (SandboxCheckout.update(status=new)
               .where(SandboxCheckout.ref == ref[:64], SandboxCheckout.status == "open",
                      SandboxCheckout.expires_at >= utcnow())
               .execute())
    checkout = SandboxCheckout.get_or_none(SandboxCheckout.ref == ref[:64])
    if checkout is None:
        abort(404, "This sandbox checkout does not exist.")
    if checkout.expired:
        return render_template("sandbox/checkout.html", checkout=checkout), 409
    if changed:
        provider = _provider()
        url = provider.settings.get("webhook_url") or _own_url(
            url_for("webhooks.receive", provider_id=provider.id))
        threading.Thread(target=send_webhook, daemon=True, name="sandbox-webhook",
                         args=(url, provider.secret, provider.event_for(checkout))).start()
    return redirect(checkout.return_url, 303)


@hookimpl
def register_payment_providers():
    return [SandboxPayment]


@hookimpl
def register_blueprints():
    return [bp]


@hookimpl
def register_models():
    return [SandboxCheckout]
