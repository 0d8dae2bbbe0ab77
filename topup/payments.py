"""The payment provider contract. A provider returns data; templates render it."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import ClassVar

from topup.money import Money


class NotConfigured(Exception):
    """Raised by a provider's __init__ when the operator has not set it up:
    the method is simply not offered (no error is logged)."""


class WebhookRejected(Exception):
    """A webhook that is forged, stale or malformed. Nothing was changed."""


@dataclass(frozen=True)
class PaymentAction:
    """What the buyer must do to pay, shown on the order page.

    kind: "redirect" (send the buyer to `url`), "qr" (show `qr_payload` as a QR
    code and `code` to copy) or "instructions" (text only).
    """
    kind: str
    provider_ref: str  # the provider's id for this payment, used to match events
    url: str | None = None
    qr_payload: str | None = None
    code: str | None = None
    instructions: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> PaymentAction:
        data = dict(data)
        data["instructions"] = tuple(data.get("instructions") or ())
        return cls(**data)


PAYMENT_EVENT_KINDS = ("succeeded", "failed", "expired", "pending", "refunded")
# What an event id or payment reference from outside may look like before we store it.
EXTERNAL_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


@dataclass(frozen=True)
class PaymentEvent:
    """A fact the provider told us about one payment (webhook or re-fetch)."""
    event_id: str  # unique per provider; replays of one id change nothing
    kind: str  # one of PAYMENT_EVENT_KINDS
    payment_ref: str  # PaymentAction.provider_ref
    amount: Money | None = None  # what the provider says was paid

    def __post_init__(self):
        if self.kind not in PAYMENT_EVENT_KINDS:
            raise ValueError(f"unknown payment event kind {self.kind!r}")


class PaymentProvider:
    """Base class. Subclasses set the class attributes and implement the methods
    in the order they run: start, parse_webhook, fetch_status, refund."""

    id: ClassVar[str]
    name: ClassVar[str]
    countries: ClassVar[frozenset[str] | None] = None  # None: anywhere
    currencies: ClassVar[frozenset[str] | None] = None  # None: any
    min_amount: ClassVar[dict[str, int]] = {}  # per currency, minor units
    max_amount: ClassVar[dict[str, int]] = {}
    supports_refund: ClassVar[bool] = False
    # How long a buyer has to pay with this method; None: ORDER_TTL_SECONDS.
    expiry_seconds: ClassVar[int | None] = None

    def __init__(self, settings: dict):
        """Settings every provider understands: fee_percent ("1.5") and
        fee_fixed ({"BRL": 50}, minor units), added to the price by the server."""
        self.settings = settings
        self.fee_percent = Decimal(str(settings.get("fee_percent", "0")))
        self.fee_fixed = {currency: int(amount)
                          for currency, amount in (settings.get("fee_fixed") or {}).items()}
        if self.fee_percent < 0 or not self.fee_percent.is_finite() or any(
                amount < 0 for amount in self.fee_fixed.values()):
            raise ValueError("fees cannot be negative")

    def fixed_fee(self, currency: str) -> Money | None:
        amount = self.fee_fixed.get(currency, 0)
        return Money(amount, currency) if amount else None

    def fee(self, price: Money) -> Money:
        """What paying `price` with this method costs on top, rounded half up."""
        variable = (Decimal(price.amount) * self.fee_percent / 100).to_integral_value(ROUND_HALF_UP)
        return Money(int(variable) + self.fee_fixed.get(price.currency, 0), price.currency)

    def serves(self, country: str, currency: str) -> bool:
        """Whether buyers in country paying in currency may use this method."""
        return ((self.countries is None or country in self.countries)
                and (self.currencies is None or currency in self.currencies))

    def accepts(self, amount: Money) -> bool:
        """Whether amount is within this method's limits."""
        low = self.min_amount.get(amount.currency)
        high = self.max_amount.get(amount.currency)
        return (low is None or amount.amount >= low) and (high is None or amount.amount <= high)

    def start(self, order, return_url: str) -> PaymentAction:
        """Begin paying `order` (its amount, currency and public_id); the buyer
        comes back to return_url. Raise on failure: the buyer is told to choose another method."""
        raise NotImplementedError

    def parse_webhook(self, request) -> list[PaymentEvent]:
        """Verify the request's signature FIRST (raise WebhookRejected), then return its events."""
        raise NotImplementedError

    def fetch_status(self, payment) -> PaymentEvent | None:
        """Ask the provider about `payment` again (heals a missed webhook)."""
        return None

    def refund(self, payment) -> PaymentEvent:
        raise NotImplementedError(f"{self.name} cannot refund")
