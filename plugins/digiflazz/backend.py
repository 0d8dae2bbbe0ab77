"""The Digiflazz delivery backend: buys the top-up under a ref_id derived from
the order, and learns the outcome from the answer, a signed callback, or a
status check (the same request again).

The ref_id is a hash of the order's public id and the try number, never the
id itself (that is the secret address of the buyer's order page). Try 0's
ref_id is the same every time, so deliver() is idempotent on the order; a new
try (and ref_id) begins only after Digiflazz answered a definite Gagal that
spent the previous one (see codes.py).
"""
from __future__ import annotations

import base64
import hashlib
import logging
import re
from datetime import timedelta

from peewee import IntegrityError

from topup.db import database
from topup.delivery import AccountInfo, DeliveryBackend, DeliveryResult
from topup.models import utcnow
from topup.orders import wake_delivery
from topup.payments import NotConfigured
from topup_plugins.digiflazz.client import (DEFAULT_BASE_URL, DigiflazzClient, NoAnswer,
                                            NotSent)
from topup_plugins.digiflazz.codes import (FINAL, SUCCESS_RC, SUKSES, interpret, reusable,
                                           spent)
from topup_plugins.digiflazz.models import DigiflazzTransaction, record

log = logging.getLogger(__name__)

# Digiflazz: a status check on a transaction older than 90 days makes a NEW one.
MAX_CHECK_AGE = timedelta(days=85)


# Every ref_id ref_id_for makes; anything else in a callback was never ours.
REF_ID = re.compile(r"TU[A-Z2-7]{20}")


def ref_id_for(public_id: str, seq: int) -> str:
    """22 characters, A-Z and 2-7: unique per order and try, and unguessable."""
    digest = hashlib.sha256(f"topup-digiflazz:{public_id}:{seq}".encode()).digest()
    return "TU" + base64.b32encode(digest).decode("ascii")[:20]


class _Answer(Exception):
    """Stop here and give the worker this result."""

    def __init__(self, result: DeliveryResult):
        self.result = result


class DigiflazzDelivery(DeliveryBackend):
    id = "digiflazz"
    name = "Digiflazz"

    def __init__(self, settings: dict):
        super().__init__(settings)
        username = str(settings.get("username") or "").strip()
        api_key = str(settings.get("api_key") or "").strip()
        if not username or not api_key:
            raise NotConfigured("digiflazz needs settings: username, api_key")
        skus = settings.get("skus") or {}
        if not isinstance(skus, dict) or not all(
                isinstance(value, str) and value.strip() for value in skus.values()):
            raise ValueError('digiflazz skus must map "<product slug>:<quantity>" to a '
                             "buyer_sku_code")
        self.skus = {str(key).strip(): value.strip() for key, value in skus.items()}
        self.webhook_secret = str(settings.get("webhook_secret") or "").strip() or None
        self.testing = _flag(settings.get("testing", False), "testing")
        self.callback_url = str(settings.get("callback_url") or "").strip() or None
        self.check_interval = float(settings.get("status_check_interval_seconds", 60))
        self.client = DigiflazzClient(username, api_key,
                                      str(settings.get("base_url") or DEFAULT_BASE_URL),
                                      float(settings.get("timeout_seconds") or 30))

    # --- the catalogue ----------------------------------------------------

    def sku_for(self, product, quantity: int) -> str | None:
        return self.skus.get(f"{product.slug}:{quantity}")

    def in_stock(self, package) -> bool:
        """A package without a SKU cannot be bought from Digiflazz: not offered."""
        return self.sku_for(package.product, package.quantity) is not None

    def lookup_account(self, product, account_id: str) -> AccountInfo:
        """Digiflazz's buyer API has no account lookup for these products: every
        well-formed id is taken as found, with no nickname to show."""
        return AccountInfo(account_id, found=True)

    # --- delivering -------------------------------------------------------

    def deliver(self, order) -> DeliveryResult:
        try:
            row = self._transaction_for(order)
            if row.status == SUKSES and row.rc == SUCCESS_RC:
                return self._interpret(row)
            self._check_age(row)
            if self._too_soon(row):  # Digiflazz asks for a minute between requests
                return DeliveryResult("pending", reference=row.ref_id, message=(
                    f"Digiflazz {row.ref_id}: asked less than {self.check_interval:g} s ago; "
                    "its status will be checked"))
            return self._send(row, checking=False)
        except _Answer as answer:
            return answer.result

    def fetch_status(self, delivery) -> DeliveryResult | None:
        """The callback's word if it was final, else the same request again."""
        row = self._latest(delivery.order.public_id)
        if row is None:
            return DeliveryResult("retry", message="no Digiflazz transaction on record")
        if row.status in FINAL:
            return self._interpret(row)
        try:
            self._check_age(row)
        except _Answer as answer:
            return answer.result
        if self._too_soon(row):
            return None
        return self._send(row, checking=True)

    def _send(self, row: DigiflazzTransaction, checking: bool) -> DeliveryResult | None:
        (DigiflazzTransaction.update(sent_at=utcnow())
         .where(DigiflazzTransaction.id == row.id).execute())
        try:
            data = self.client.transaction(buyer_sku_code=row.buyer_sku_code,
                                           customer_no=row.customer_no, ref_id=row.ref_id,
                                           testing=self.testing, cb_url=self.callback_url)
        except NotSent as error:  # nothing reached processing: no request to space out from
            (DigiflazzTransaction.update(sent_at=row.sent_at)
             .where(DigiflazzTransaction.id == row.id).execute())
            if checking:
                return None
            return DeliveryResult("retry", message=f"Digiflazz {row.ref_id}: not sent, {error}")
        except NoAnswer as error:  # it may have been bought: only a status check can tell
            if checking:
                log.warning("digiflazz status check for %s: %s", row.ref_id, error)
                return None
            return DeliveryResult("pending", reference=row.ref_id, message=(
                f"Digiflazz {row.ref_id}: {error}; its status will be checked"))
        if data.get("ref_id") != row.ref_id:
            log.warning("digiflazz answered about %r when asked about %s",
                        str(data.get("ref_id"))[:40], row.ref_id)
            return None if checking else DeliveryResult("pending", reference=row.ref_id, message=(
                f"Digiflazz {row.ref_id}: the answer named another ref_id; "
                "its status will be checked"))
        return self._interpret(record(row.ref_id, data, "api") or row)

    # --- which ref_id ----------------------------------------------------------

    def _transaction_for(self, order) -> DigiflazzTransaction:
        """The try to send: a succeeded one, the current one, or a new one after a
        failure that spent the last ref_id."""
        rows = list(DigiflazzTransaction.select()
                    .where(DigiflazzTransaction.order_ref == order.public_id)
                    .order_by(DigiflazzTransaction.seq))
        for row in rows:
            if row.status == SUKSES and row.rc == SUCCESS_RC:
                return row
        latest = rows[-1] if rows else None
        if latest is not None and not spent(latest.status, latest.rc):
            if reusable(latest.status, latest.rc):  # formed nothing: the request may change
                sku = self._sku(order)
                if (sku, order.account_id) != (latest.buyer_sku_code, latest.customer_no):
                    (DigiflazzTransaction
                     .update(buyer_sku_code=sku, customer_no=order.account_id, updated_at=utcnow())
                     .where(DigiflazzTransaction.id == latest.id).execute())
                    return DigiflazzTransaction.get_by_id(latest.id)
            return latest
        seq = latest.seq + 1 if latest is not None else 0
        sku = self._sku(order)
        try:
            with database.atomic():
                DigiflazzTransaction.create(ref_id=ref_id_for(order.public_id, seq),
                                            order_ref=order.public_id, seq=seq,
                                            buyer_sku_code=sku, customer_no=order.account_id)
        except IntegrityError:  # another worker made this try first (a lease ran out)
            pass
        return DigiflazzTransaction.get(DigiflazzTransaction.order_ref == order.public_id,
                                        DigiflazzTransaction.seq == seq)

    def _latest(self, public_id: str) -> DigiflazzTransaction | None:
        rows = (DigiflazzTransaction.select()
                .where(DigiflazzTransaction.order_ref == public_id)
                .order_by(DigiflazzTransaction.seq.desc()))
        succeeded = rows.where(DigiflazzTransaction.status == SUKSES,
                               DigiflazzTransaction.rc == SUCCESS_RC).first()
        return succeeded or rows.first()

    def _sku(self, order) -> str:
        sku = self.sku_for(order.product, order.quantity)
        if sku is None:
            raise _Answer(DeliveryResult("failed", message=(
                f"no Digiflazz SKU for {order.product.slug}:{order.quantity}; "
                "add it to the digiflazz skus setting, then retry the delivery")))
        return sku

    def _check_age(self, row: DigiflazzTransaction) -> None:
        if row.status not in FINAL and utcnow() - row.created_at > MAX_CHECK_AGE:
            raise _Answer(DeliveryResult("failed", message=(
                f"Digiflazz {row.ref_id} is too old to check (asking after 90 days would buy "
                "again); look it up in the Digiflazz dashboard and settle the order by hand")))

    def _too_soon(self, row: DigiflazzTransaction) -> bool:
        return (row.sent_at is not None and row.status not in FINAL
                and (utcnow() - row.sent_at).total_seconds() < self.check_interval)

    @staticmethod
    def _interpret(row: DigiflazzTransaction) -> DeliveryResult:
        return interpret(row.ref_id, row.status, row.rc, row.sn, row.message)


def apply_callback(data: dict) -> str:
    """Keep a verified callback's word on its ref_id; if final, make the waiting
    delivery due now. Returns "unknown" (not a ref_id we sent) or "recorded".
    A ref_id not shaped like ours is unknown without a query: a signed body can
    still carry a NUL or stray bytes, which Postgres refuses with an error."""
    ref_id = data.get("ref_id")
    valid = isinstance(ref_id, str) and REF_ID.fullmatch(ref_id) is not None
    row = record(ref_id, data, "callback") if valid else None
    if row is None:
        return "unknown"
    if row.status in FINAL:
        wake_delivery(row.order_ref)
    return "recorded"


def _flag(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off", "none"):
        return False
    raise ValueError(f"digiflazz {name} must be true or false")
