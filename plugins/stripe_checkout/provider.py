"""The Stripe Checkout payment provider (official `stripe` SDK, one StripeClient
per provider: no global API key, no global api_base)."""
from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timezone

import stripe

from topup import hookimpl
from topup.money import Money, digits
from topup.payments import NotConfigured, PaymentAction, PaymentEvent, PaymentProvider, WebhookRejected

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Stripe-Signature"
TOLERANCE_SECONDS = 300

# Minor-unit digits Stripe's API uses per currency (docs.stripe.com/currencies):
# VND is in Stripe's zero-decimal list; the others are two-decimal in the API.
# IDR is two-decimal in Stripe as in ISO 4217 (Rp 15.000 is 1500000).
# Only currencies checked against Stripe's list are here. A currency is offered
# only when this matches topup.money.digits (ISO 4217), so an order's minor
# units are sent unchanged. Stripe's "special cases" (ISK, HUF, TWD: two-decimal
# in the API but charged in whole units only; UGX: zero-decimal in Stripe) are
# left out on purpose: their amounts cannot be passed through exactly.
STRIPE_DIGITS = {
    "USD": 2, "EUR": 2, "IDR": 2, "PHP": 2, "BRL": 2, "THB": 2, "INR": 2, "MXN": 2, "VND": 0,
}
SUPPORTED_CURRENCIES = frozenset(c for c, d in STRIPE_DIGITS.items() if digits(c) == d)

# Checkout Sessions live 30 minutes to 24 hours after creation; keep a margin for clocks.
MIN_SESSION_SECONDS = 30 * 60 + 120
MAX_SESSION_SECONDS = 24 * 3600 - 120

HANDLED_EVENTS = frozenset({
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
})
SESSION_ID = re.compile(r"cs_[A-Za-z0-9_]{1,250}")
EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]{1,250}")


def session_expiry(order_expires_at: datetime, now: float | None = None) -> int:
    """The session's expires_at (unix seconds): the order's deadline, clamped
    into the window Stripe accepts (30 min to 24 h from now)."""
    now = time.time() if now is None else now
    if order_expires_at.tzinfo is None:  # the shop stores naive UTC
        order_expires_at = order_expires_at.replace(tzinfo=timezone.utc)
    wanted = int(order_expires_at.timestamp())
    return max(int(now) + MIN_SESSION_SECONDS, min(wanted, int(now) + MAX_SESSION_SECONDS))


def session_state(session) -> str | None:
    """What a Checkout Session says about its payment, as a PaymentEvent kind
    (None: the buyer has not finished yet)."""
    if session.get("payment_status") == "paid":
        return "succeeded"
    status = session.get("status")
    if status == "expired":
        return "expired"
    if status == "complete":  # finished, money not there yet (bank debits, vouchers...)
        return "pending"
    return None


def session_money(session) -> Money | None:
    amount, currency = session.get("amount_total"), session.get("currency")
    if type(amount) is not int or not isinstance(currency, str):
        return None
    return Money(amount, currency.upper())


class StripeCheckout(PaymentProvider):
    id = "stripe"
    name = "Card and more (Stripe)"
    countries = None  # wherever the order's currency is one Stripe takes exactly
    currencies = SUPPORTED_CURRENCIES
    # Stripe's documented limits: at least $0.50 / 0.50 EUR (other currencies
    # depend on the settlement currency and are left to Stripe); at most eight digits.
    min_amount = {"USD": 50, "EUR": 50}
    max_amount = {currency: 99_999_999 for currency in SUPPORTED_CURRENCIES}
    supports_refund = True

    def __init__(self, settings: dict):
        secret_key = str(settings.get("secret_key") or "").strip()
        webhook_secret = str(settings.get("webhook_secret") or "").strip()
        missing = [name for name, value in (("secret_key", secret_key),
                                            ("webhook_secret", webhook_secret)) if not value]
        if missing:
            raise NotConfigured(f"stripe_checkout needs settings: {', '.join(missing)}")
        if not secret_key.startswith(("sk_", "rk_")):  # never echo the value itself
            raise ValueError("stripe_checkout secret_key must be a secret (sk_...) or "
                             "restricted (rk_...) API key")
        if not webhook_secret.startswith("whsec_"):
            raise ValueError("stripe_checkout webhook_secret must be an endpoint secret (whsec_...)")
        # The base class keeps settings; keep only what is safe to show there.
        super().__init__({k: v for k, v in settings.items()
                          if k not in ("secret_key", "webhook_secret")})
        self._webhook_secret = webhook_secret
        api_base = str(settings.get("api_base") or "").strip().rstrip("/")
        self._client = stripe.StripeClient(
            secret_key, base_addresses={"api": api_base} if api_base else None,
            max_network_retries=2)

    def __repr__(self) -> str:  # never the keys
        return f"<StripeCheckout api_base={self.settings.get('api_base') or 'stripe'}>"

    def serves(self, country: str, currency: str) -> bool:
        return currency in SUPPORTED_CURRENCIES and super().serves(country, currency)

    def _session(self, session_id: str) -> dict:
        return self._client.v1.checkout.sessions.retrieve(session_id).to_dict()

    # --- start -------------------------------------------------------------------------

    def start(self, order, return_url: str) -> PaymentAction:
        currency = order.currency.upper()
        if currency not in SUPPORTED_CURRENCIES:
            raise ValueError(f"Stripe Checkout does not take {currency} here")
        session = self._client.v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "line_items": [{
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": int(order.amount),  # minor units: same digits as Stripe's
                        "product_data": {"name": _item_name(order)},
                    },
                }],
                "client_reference_id": order.public_id,
                "metadata": {"order_id": order.public_id},
                "payment_intent_data": {"metadata": {"order_id": order.public_id}},
                "success_url": return_url,
                "cancel_url": return_url,
                "expires_at": session_expiry(order.expires_at),
            },
            options={"idempotency_key": f"topup-checkout-{order.public_id}"},
        ).to_dict()
        if session.get("amount_total") != order.amount or \
                str(session.get("currency", "")).upper() != currency:
            raise ValueError("Stripe created a session for another amount")
        if not session.get("url") or not SESSION_ID.fullmatch(str(session.get("id") or "")):
            raise ValueError("Stripe answered without a checkout URL")
        return PaymentAction(kind="redirect", provider_ref=session["id"], url=session["url"])

    # --- webhooks ----------------------------------------------------------------------

    def parse_webhook(self, request) -> list[PaymentEvent]:
        body = request.get_data(cache=False)
        try:  # the signature FIRST: nothing in an unsigned body is looked at
            event = stripe.Webhook.construct_event(
                body, request.headers.get(SIGNATURE_HEADER), self._webhook_secret,
                tolerance=TOLERANCE_SECONDS).to_dict()
        except stripe.SignatureVerificationError as error:
            raise WebhookRejected(f"bad Stripe-Signature: {getattr(error, 'user_message', None) or 'invalid'}") from None
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as error:
            raise WebhookRejected(f"malformed event: {type(error).__name__}") from None
        if _signed_at(request.headers[SIGNATURE_HEADER]) > time.time() + TOLERANCE_SECONDS:
            # the SDK only refuses old timestamps; one from the future is as suspect
            raise WebhookRejected("bad Stripe-Signature: timestamp in the future")
        try:
            event_id, event_type = event["id"], event["type"]
            if not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
                raise ValueError("bad event id")
            if event_type not in HANDLED_EVENTS:
                return []  # acknowledged: nothing for us (payment_intent.*, charge.*, ...)
            claimed = event["data"]["object"]
            session_id = claimed["id"]
            if not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id):
                raise ValueError("bad session id")
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise WebhookRejected(f"malformed event: {error}") from None

        # Signed is not enough: ask the API what the session really is now.
        session = self._session(session_id)
        if session.get("id") != session_id:
            raise WebhookRejected("the API answered for another session")
        kind = session_state(session)
        if event_type == "checkout.session.async_payment_failed" and kind != "succeeded":
            kind = "failed"  # the session stays "complete/unpaid"; the event says why
        if kind is None:  # still open: a claim the API does not back
            log.warning("stripe event %s (%s) for a session the API reports open",
                        event_id, event_type)
            return []
        return [PaymentEvent(event_id=event_id, kind=kind, payment_ref=session_id,
                             amount=session_money(session))]

    # --- re-fetch and refund -------------------------------------------------------------

    def fetch_status(self, payment) -> PaymentEvent | None:
        if not payment.provider_ref:
            return None
        session = self._session(payment.provider_ref)
        kind = session_state(session)
        if kind is None:
            return None
        # The same state always has the same id: re-fetching twice changes nothing.
        return PaymentEvent(event_id=f"{session['id']}:{kind}", kind=kind,
                            payment_ref=session["id"], amount=session_money(session))

    def refund(self, payment) -> PaymentEvent:
        session = self._session(payment.provider_ref)
        payment_intent = session.get("payment_intent")
        if isinstance(payment_intent, dict):  # expanded
            payment_intent = payment_intent.get("id")
        if session.get("payment_status") != "paid" or not payment_intent:
            raise ValueError(f"Stripe session {session['id']} has no paid payment to refund")
        refund = self._client.v1.refunds.create(
            params={"payment_intent": payment_intent,
                    "metadata": {"order_id": str(session.get("client_reference_id") or "")}},
            options={"idempotency_key": f"topup-refund-{session['id']}"}).to_dict()
        if refund.get("status") in ("failed", "canceled"):
            raise ValueError(f"Stripe refund {refund['id']} {refund.get('status')}")
        return PaymentEvent(event_id=f"{refund['id']}:refunded", kind="refunded",
                            payment_ref=session["id"],
                            amount=Money(refund["amount"], str(refund["currency"]).upper()))


def _signed_at(header: str) -> int:
    """The t= of a Stripe-Signature header the SDK has already verified."""
    for part in header.split(","):
        key, _, value = part.partition("=")
        if key.strip() == "t":
            return int(value)
    raise WebhookRejected("bad Stripe-Signature: no timestamp")


def _item_name(order) -> str:
    try:
        product = order.product.name
    except Exception:  # noqa: BLE001 - a name is a nicety, never a reason to fail
        product = "Top-up"
    quantity = getattr(order, "quantity", None)
    return f"{quantity} {product}" if quantity else str(product)


@hookimpl
def register_payment_providers():
    return [StripeCheckout]
