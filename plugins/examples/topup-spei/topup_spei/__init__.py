"""SPEI (Mexico): the buyer sends an instant bank transfer to the shop's CLABE
with the order's concepto; the shop's bank or PSP relays each incoming
transfer as a notification signed with topup.signing's scheme.

Settings (PLUGINS["spei"]): clabe and beneficiary (required), bank, and
notification_secret (e.g. {"$env": "SPEI_NOTIFICATION_SECRET"}); without the
secret no notification is believed and the operator marks orders paid by hand.
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
from decimal import Decimal

from topup import hookimpl, signing
from topup.money import Money, written_as
from topup.payments import (EXTERNAL_ID, NotConfigured, PaymentAction, PaymentEvent,
                            PaymentProvider, WebhookRejected)

TOPUP_HOOK_API = 1  # written for topup's hook API 1: a topup with an older one refuses it
HEADER = "Spei-Signature"


def clabe_valid(clabe: str) -> bool:
    """18 digits, the last a check digit (Banxico: weights 3, 7, 1, modulo 10)."""
    if not re.fullmatch(r"[0-9]{18}", clabe):
        return False
    total = sum(int(d) * w % 10 for d, w in zip(clabe[:17], itertools.cycle((3, 7, 1))))
    return (10 - total % 10) % 10 == int(clabe[17])


def concepto(order) -> str:
    """The transfer's concepto: a hash of the order, never its secret public id."""
    digest = hashlib.sha256(f"topup-spei:{order.public_id}".encode()).digest()
    return "TU" + base64.b32encode(digest).decode("ascii")[:14]


class Spei(PaymentProvider):
    id = "spei"
    name = "SPEI transfer"
    countries = frozenset({"MX"})
    currencies = frozenset({"MXN"})
    min_amount = {"MXN": 1}

    def __init__(self, settings: dict):
        super().__init__(settings)
        if not settings.get("clabe") or not settings.get("beneficiary"):
            raise NotConfigured("spei needs settings: clabe, beneficiary")
        self.clabe = re.sub(r"[\s-]", "", str(settings["clabe"]))
        if not clabe_valid(self.clabe):
            raise ValueError("spei: clabe is not a valid 18-digit CLABE")
        self.beneficiary = str(settings["beneficiary"]).strip()
        self.bank = str(settings.get("bank") or "").strip()
        self.secret = str(settings.get("notification_secret") or "")

    def start(self, order, return_url: str) -> PaymentAction:
        reference = concepto(order)
        total = Money(order.amount, order.currency).format(written_as(order.locale or "en",
                                                                      order.country))
        lines = (f"Send exactly {total} by SPEI from your bank's app.",
                 f"CLABE: {self.clabe}" + (f" ({self.bank})" if self.bank else ""),
                 f"Beneficiary: {self.beneficiary}",
                 f"Concepto de pago: {reference} (without it we cannot match your transfer)",
                 f"Pay before {order.expires_at:%Y-%m-%d %H:%M} UTC.")
        return PaymentAction(kind="instructions", provider_ref=reference, code=reference,
                             instructions=lines)

    def parse_webhook(self, request) -> list[PaymentEvent]:
        """Signature first; then one transfer into our CLABE, amount in pesos as text."""
        if not self.secret:
            raise WebhookRejected("spei has no notification_secret")
        body = request.get_data(cache=False)
        try:
            signing.verify(self.secret, body, request.headers.get(HEADER), header_name=HEADER)
        except signing.SignatureError as error:
            raise WebhookRejected(str(error)) from None
        try:
            note = json.loads(body, parse_float=Decimal)
            ids = (note["claveRastreo"], note["conceptoPago"])
            if not all(isinstance(v, str) and EXTERNAL_ID.fullmatch(v) for v in ids):
                raise ValueError("claveRastreo and conceptoPago must be short identifiers")
            if note["cuentaBeneficiario"] != self.clabe:
                raise ValueError("a transfer into another account")
            amount = Money.from_decimal(str(note["monto"]), "MXN")  # exact, never float
        except (ValueError, KeyError, TypeError, ArithmeticError) as error:
            raise WebhookRejected(f"malformed notification: {error}") from None
        return [PaymentEvent(event_id=f"spei:{ids[0]}", kind="succeeded", payment_ref=ids[1],
                             amount=amount)]


@hookimpl
def register_payment_providers():
    return [Spei]
