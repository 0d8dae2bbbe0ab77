"""Sandbox delivery: every well-formed username exists (nickname made from it)
except those beginning with "nobody"; deliveries credit a local ledger, once
per order. Settings: delay_seconds (slow deliveries), fail_times (answer
"retry" that many times per order first), lookup_delay_seconds, and
pause_after_credit_seconds (credited, but the answer not yet given: the
window a crash test kills a worker in)."""
from __future__ import annotations

import re
import time

from peewee import CharField, DateTimeField, IntegerField

from topup import hookimpl
from topup.db import database
from topup.delivery import AccountInfo, DeliveryBackend, DeliveryResult
from topup.models import BaseModel, utcnow


class SandboxCredit(BaseModel):
    """The ledger: one row per order public id, credited at most once."""
    order_ref = CharField(unique=True)
    account_id = CharField()
    quantity = IntegerField()
    attempts = IntegerField(default=0)
    reference = CharField(null=True)
    credited_at = DateTimeField(null=True)

    class Meta:
        table_name = "sandbox_credit"


def nickname_for(username: str) -> str:
    words = [word for word in re.split(r"[._\d]+", username) if word]
    return " ".join(word.capitalize() for word in words) or username


class SandboxDelivery(DeliveryBackend):
    id = "sandbox"
    name = "Sandbox ledger"

    def lookup_account(self, product, account_id: str) -> AccountInfo:
        time.sleep(float(self.settings.get("lookup_delay_seconds", 0)))
        if account_id.startswith("nobody"):
            return AccountInfo(account_id, found=False, reason="No such account.")
        return AccountInfo(account_id, found=True, nickname=nickname_for(account_id))

    def deliver(self, order) -> DeliveryResult:
        time.sleep(float(self.settings.get("delay_seconds", 0)))
        with database.atomic():
            SandboxCredit.insert(order_ref=order.public_id, account_id=order.account_id,
                                 quantity=order.quantity).on_conflict_ignore().execute()
            SandboxCredit.update(attempts=SandboxCredit.attempts + 1).where(
                SandboxCredit.order_ref == order.public_id).execute()
            credit = SandboxCredit.get(SandboxCredit.order_ref == order.public_id)
            if credit.credited_at is not None:
                return DeliveryResult("delivered", reference=credit.reference)
            if credit.attempts <= int(self.settings.get("fail_times", 0)):
                return DeliveryResult("retry", message="sandbox told to fail")
            reference = f"SBX-{credit.id:06d}"
            SandboxCredit.update(credited_at=utcnow(), reference=reference).where(
                SandboxCredit.id == credit.id).execute()
        time.sleep(float(self.settings.get("pause_after_credit_seconds", 0)))
        return DeliveryResult("delivered", reference=reference)

    def fetch_status(self, delivery) -> DeliveryResult | None:
        credit = SandboxCredit.get_or_none(SandboxCredit.order_ref == delivery.order.public_id)
        if credit is None or credit.credited_at is None:
            return None
        return DeliveryResult("delivered", reference=credit.reference)


@hookimpl
def register_delivery_backends():
    return [SandboxDelivery]


@hookimpl
def register_models():
    return [SandboxCredit]
