"""What the offline QR / transfer providers share: settings, the per-order
reference, the buyer's instructions, and the absent webhook."""
from __future__ import annotations

import base64
import hashlib

from topup.money import Money
from topup.payments import NotConfigured, PaymentAction, PaymentProvider, WebhookRejected


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
    return f"Pay before {order.expires_at:%Y-%m-%d %H:%M} UTC."


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

    def action(self, order, *, reference: str, payload: str, code: str | None,
               lines=(), url: str | None = None) -> PaymentAction:
        total = Money(order.amount, order.currency).format(order.locale or "en")
        return PaymentAction(
            kind="qr", provider_ref=reference, qr_payload=payload, code=code, url=url,
            instructions=(f"Amount: {total}", *lines, f"Reference: {reference}", pay_before(order)))

    def parse_webhook(self, request):
        raise WebhookRejected(f"{self.name} has no webhook; confirmation comes from the operator")
