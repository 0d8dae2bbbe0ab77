"""The receipts outbox: one row per (order, kind), so each e-mail goes out once."""
from __future__ import annotations

from peewee import CharField, DateTimeField, IntegerField, TextField

from topup.models import BaseModel, utcnow


class ReceiptMail(BaseModel):
    """A buyer e-mail owed for one order event. The UNIQUE (order_ref, kind)
    makes recording it idempotent; the sending_until lease makes sending it a
    compare-and-set, so two broadcasts of the same change never send twice."""
    order_ref = CharField()  # Order.public_id
    kind = CharField()  # paid | delivered | needs_attention | refunded
    to = CharField()
    link = CharField(null=True)  # the order page, as known when the event happened
    attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField(default=utcnow, index=True)
    sending_until = DateTimeField(null=True)  # the lease of the one sender at work
    sent_at = DateTimeField(null=True)
    last_error = TextField(null=True)
    message_id = CharField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "receipt_mail"
        indexes = ((("order_ref", "kind"), True),)
