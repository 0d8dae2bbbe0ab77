"""The "vouchers" delivery backend: each order gets one code from stock.

A code is allocated once (order_ref UNIQUE) and the answer is immediate, so
there is no fetch_status. No code left: the delivery fails loudly and the
order waits for the operator (restock, then "deliver again", or refund).
"""
from __future__ import annotations

from peewee import IntegrityError

from topup.db import database, is_sqlite
from topup.delivery import AccountInfo, DeliveryBackend, DeliveryResult
from topup.models import utcnow
from topup.payments import NotConfigured

from topup_plugins.vouchers.crypto import InvalidToken, Vault, configured_keys
from topup_plugins.vouchers.models import VoucherCode

DEFAULT_LOW_STOCK = 10


class VoucherDelivery(DeliveryBackend):
    id = "vouchers"
    name = "Voucher codes"

    def __init__(self, settings: dict):
        super().__init__(settings)
        keys = configured_keys(settings)
        if not keys:
            raise NotConfigured("vouchers: no key (see docs/backends/vouchers.md)")
        self.vault = Vault(keys)
        self.low_stock = int(settings.get("low_stock", DEFAULT_LOW_STOCK))
        self.alert_email = settings.get("alert_email") or None

    def lookup_account(self, product, account_id: str) -> AccountInfo:
        """A code is not tied to an account: every well-formed one will do."""
        return AccountInfo(account_id, found=True)

    def deliver(self, order) -> DeliveryResult:
        try:
            code = allocate(order)
        except IntegrityError:  # another worker allocated for this same order meanwhile
            code = VoucherCode.get_or_none(VoucherCode.order_ref == order.public_id)
            if code is None:
                raise
        if code is None:
            return DeliveryResult("failed", message="Out of stock: no voucher codes left for "
                                  f"{order.product.name} {order.quantity}")
        return DeliveryResult("delivered", reference=f"voucher #{code.id}")

    def in_stock(self, package) -> bool:
        return free_codes(package).exists()

    def buyer_code(self, order) -> str | None:
        code = VoucherCode.get_or_none(VoucherCode.order_ref == order.public_id)
        if code is None:
            return None
        try:
            return self.vault.decrypt(code.ciphertext)
        except InvalidToken:
            raise RuntimeError(f"voucher #{code.id} opens with none of the configured keys "
                               "(was a key removed before `topup vouchers rotate`?)") from None


def free_codes(package):
    return VoucherCode.select(VoucherCode.id).where(VoucherCode.package == package,
                                                    VoucherCode.order_ref.is_null())


def allocate(order) -> VoucherCode | None:
    """The order's code: the one it already has, else the oldest free one of
    its package, taken by compare-and-set; None when none is left."""
    with database.atomic():
        mine = VoucherCode.get_or_none(VoucherCode.order_ref == order.public_id)
        if mine is not None:
            return mine
        while True:
            free = _next_free(order.package_id)
            if free is None:
                return None
            now = utcnow()
            taken = (VoucherCode.update(order_ref=order.public_id, allocated_at=now)
                     .where(VoucherCode.id == free.id, VoucherCode.order_ref.is_null())
                     .execute())
            if taken == 1:
                return VoucherCode.get_by_id(free.id)


def _next_free(package_id: int) -> VoucherCode | None:
    query = free_codes(package_id).order_by(VoucherCode.id).limit(1)
    if is_sqlite():  # BEGIN IMMEDIATE: this transaction is the only writer
        return query.first()
    # Skip codes other workers are taking; only when none is left, wait for
    # them, so a code whose allocation rolls back is not mistaken for none.
    return query.for_update(skip_locked=True).first() or query.for_update().first()
