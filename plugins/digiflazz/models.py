"""The plugin's own table: each ref_id sent to Digiflazz and the latest word on it."""
from __future__ import annotations

import logging

from peewee import CharField, DateTimeField, IntegerField, TextField

from topup.db import database, is_sqlite
from topup.models import BaseModel, utcnow
from topup_plugins.digiflazz.codes import FINAL, GAGAL, SUKSES

log = logging.getLogger(__name__)


class DigiflazzTransaction(BaseModel):
    """One ref_id per try for an order (seq 0, then 1... after a definite
    failure). The same ref_id always carries the same request, so sending it
    again is a status check, never a second purchase."""
    ref_id = CharField(unique=True, max_length=40)
    order_ref = CharField(index=True)  # the order's public id
    seq = IntegerField(default=0)
    buyer_sku_code = CharField()
    customer_no = CharField()
    status = CharField(null=True)  # Digiflazz's: Sukses | Pending | Gagal; None: no answer yet
    rc = CharField(null=True, max_length=8)
    sn = CharField(null=True)
    message = TextField(null=True)
    source = CharField(null=True)  # where status came from: "api" or "callback"
    sent_at = DateTimeField(null=True)  # our last request about this ref_id
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "digiflazz_transaction"
        indexes = ((("order_ref", "seq"), True),)


def _text(value, limit: int) -> str | None:
    """A field of Digiflazz's answer as bounded text (rc may come as a number)."""
    if isinstance(value, bool) or value is None:
        return None
    if not isinstance(value, (str, int)):
        return None
    text = "".join(ch for ch in str(value) if ch.isprintable()).strip()
    return text[:limit] or None


def record(ref_id: str, data: dict, source: str) -> DigiflazzTransaction | None:
    """Keep Digiflazz's latest word on ref_id. A final status (Sukses, Gagal) is
    never replaced by a non-final one: answers and callbacks can arrive out of
    order. None: we never sent this ref_id."""
    status = _text(data.get("status"), 20)
    fields = {"status": status, "rc": _text(data.get("rc"), 8), "sn": _text(data.get("sn"), 255),
              "message": _text(data.get("message"), 500), "source": source,
              "updated_at": utcnow()}
    with database.atomic():
        query = DigiflazzTransaction.select().where(DigiflazzTransaction.ref_id == ref_id)
        row = (query if is_sqlite() else query.for_update()).first()
        if row is None:
            return None
        if row.status in FINAL and status not in FINAL:
            return row
        if row.status == SUKSES and status == GAGAL:
            log.warning("digiflazz %s turned from Sukses to Gagal (rc %s)", ref_id, fields["rc"])
        DigiflazzTransaction.update(**fields).where(DigiflazzTransaction.id == row.id).execute()
    return DigiflazzTransaction.get_by_id(row.id)
