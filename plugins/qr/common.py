"""What the offline QR / transfer providers share: settings, the per-order
reference, the buyer's instructions, and the signed "money received" notification.

The instructions are written in the order's language (Order.locale, the
buyer's at checkout) when the payment starts, as the amount in them is: the
Payment keeps them as plain text, so the order page and any later reader show
exactly what the buyer was told.
"""
from __future__ import annotations

import base64
import hashlib
import json

from flask_babel import force_locale, gettext

from topup import signing
from topup.money import Money, written_as
from topup.payments import (
    EXTERNAL_ID, NotConfigured, PaymentAction, PaymentEvent, PaymentProvider, WebhookRejected,
)

# Header of the signed "money received" notification (topup.signing's scheme).
NOTIFICATION_HEADER = "Topup-Signature"


def order_reference(order, prefix: str = "TU") -> str:
    """A short, unique, alphanumeric payment reference for an order.

    Derived from order.public_id by hashing, never the id itself: the reference
    travels to banks and payees, and the order's address must stay secret.
    16 characters (prefix + 70 bits of base32), within every scheme's limit
    (Pix txid 25, UPI tr 35, SEPA remittance 140).
    """
    digest = hashlib.sha256(f"topup-payment-reference:{order.public_id}".encode()).digest()
    return prefix + base64.b32encode(digest).decode("ascii")[:14]


def pay_before(order) -> str:
    """The order's deadline as plain text (expires_at is naive UTC)."""
    return gettext("Pay before %(deadline)s UTC.", deadline=f"{order.expires_at:%Y-%m-%d %H:%M}")


class OfflineProvider(PaymentProvider):
    """A method the buyer pays from their own banking app, with no provider in
    between to tell us: the order is confirmed by the operator (or, later, a
    signed bank notification), never by this class."""

    required_settings: tuple[str, ...] = ()

    def __init__(self, settings: dict):
        super().__init__(settings)
        missing = [key for key in self.required_settings
                   if not str(settings.get(key) or "").strip()]
        if missing:
            raise NotConfigured(f"{self.id} needs settings: {', '.join(missing)}")

    def setting(self, key: str, default: str = "") -> str:
        return str(self.settings.get(key) or default).strip()

    def instruction_lines(self, order) -> list[str]:
        """The method's own instruction lines (who to pay, how), between the
        amount and the reference; gettext gives them in the order's language."""
        return []

    def action(self, order, *, reference: str, payload: str, code: str | None,
               url: str | None = None) -> PaymentAction:
        locale = order.locale or "en"
        total = Money(order.amount, order.currency).format(written_as(locale, order.country))
        with force_locale(locale):
            instructions = (gettext("Amount: %(amount)s", amount=total),
                            *self.instruction_lines(order),
                            gettext("Reference: %(reference)s", reference=reference),
                            pay_before(order))
        return PaymentAction(kind="qr", provider_ref=reference, qr_payload=payload, code=code,
                             url=url, instructions=tuple(instructions))

    def parse_webhook(self, request) -> list[PaymentEvent]:
        """A bank or PSP notification of money received, signed with the
        provider's notification_secret (see NOTIFICATION_HEADER). Without that
        secret there is no webhook: the operator confirms payments by hand."""
        secret = self.setting("notification_secret")
        if not secret:
            raise WebhookRejected(f"{self.name} has no notification_secret; "
                                  "the operator confirms its payments")
        body = request.get_data(cache=False)
        try:
            signing.verify(secret, body, request.headers.get(NOTIFICATION_HEADER),
                           header_name=NOTIFICATION_HEADER)
        except signing.SignatureError as error:
            raise WebhookRejected(str(error)) from None
        try:
            note = json.loads(body)
            ids = (note["id"], note["reference"])
            if note["type"] != "payment.received" or not all(
                    isinstance(value, str) and EXTERNAL_ID.fullmatch(value) for value in ids):
                raise ValueError("expected type payment.received and short printable ids")
            return [PaymentEvent(event_id=note["id"], kind="succeeded",
                                 payment_ref=note["reference"],
                                 amount=Money(note["amount"], str(note["currency"])))]
        except (ValueError, KeyError, TypeError) as error:
            raise WebhookRejected(f"malformed notification: {error}") from None
