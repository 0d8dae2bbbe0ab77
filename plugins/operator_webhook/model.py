"""The receiver's latest callback per order, and the checks its values pass."""
from __future__ import annotations

import re

from peewee import CharField, DateTimeField, TextField

from topup.models import BaseModel, utcnow

MAX_REFERENCE = 100
ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class OperatorWebhookResult(BaseModel):
    """What the receiver's callback said about an order: what fetch_status reports.
    One row per order (the latest answer), so a repeated callback changes nothing."""
    order_ref = CharField(unique=True)
    status = CharField()  # delivered | failed
    reference = CharField(null=True, max_length=MAX_REFERENCE)
    message = TextField(null=True)
    received_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "operator_webhook_result"


def valid_reference(value) -> str | None:
    """The receiver's reference if usable as ours (shown to people and stored):
    a non-empty, printable string of at most 100 characters; else None."""
    if (isinstance(value, str) and 0 < len(value) <= MAX_REFERENCE and value.isprintable()
            and value.strip()):
        return value
    return None


def printable(text: str, limit: int) -> str:
    """Untrusted text made safe for a one-line log or timeline entry: control
    characters become spaces, runs of white space one space, at most limit chars."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text[:limit * 4])
    return " ".join(cleaned.split())[:limit]
