"""The delivery backend contract: find the buyer's account, then credit it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class AccountInfo:
    """The answer to "who is this?": a nickname, or why not."""
    account_id: str
    found: bool
    nickname: str | None = None
    reason: str | None = None  # shown to the buyer when not found


DELIVERY_STATUSES = ("delivered", "pending", "retry", "failed")


@dataclass(frozen=True)
class DeliveryResult:
    """delivered: done (reference is the backend's receipt); pending: accepted,
    ask again later; retry: a transient error, try again; failed: will never work."""
    status: str
    reference: str | None = None
    message: str | None = None

    def __post_init__(self):
        if self.status not in DELIVERY_STATUSES:
            raise ValueError(f"unknown delivery status {self.status!r}")


class DeliveryBackend:
    """Base class. The worker calls deliver() once per attempt, and
    fetch_status() while a delivery it answered "pending" for is in flight."""
    id: ClassVar[str]
    name: ClassVar[str]

    def __init__(self, settings: dict):
        self.settings = settings

    def lookup_account(self, product, account_id: str) -> AccountInfo:
        """account_id is already normalised and well-formed (see topup.accounts)."""
        raise NotImplementedError

    def deliver(self, order) -> DeliveryResult:
        """Credit order.quantity to order.account_id. MUST be idempotent on
        order.public_id: a second call for the same order reports, never credits again."""
        raise NotImplementedError

    def fetch_status(self, delivery) -> DeliveryResult | None:
        """Ask again about a delivery this backend answered "pending" for
        (delivery.order is the order). None: no news yet, ask again later."""
        return None

    def in_stock(self, package) -> bool:
        """Whether a new order for package could be delivered now. False hides
        the package from buyers (e.g. no voucher codes left)."""
        return True

    def buyer_code(self, order) -> str | None:
        """What the buyer needs to use a delivered order (e.g. a voucher code),
        shown on their order page and in their receipt. Core never stores it."""
        return None
