"""The voucher stock: one row per code, encrypted; and which packages are low."""
from __future__ import annotations

from peewee import CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from topup.models import BaseModel, Package, utcnow


class VoucherCode(BaseModel):
    """A code is free while order_ref is NULL; allocating it sets order_ref (the
    order's public id), once. The code itself is only ever stored encrypted."""
    # No cascade: deleting a package must not silently destroy paid-for stock.
    package = ForeignKeyField(Package, backref="voucher_codes")
    ciphertext = TextField()  # a Fernet token
    # HMAC-SHA256 of the normalised code under a key derived from the Fernet key:
    # duplicates are refused without decrypting anything.
    fingerprint = CharField(max_length=64, unique=True)
    order_ref = CharField(null=True, unique=True)
    batch = CharField(null=True)
    imported_at = DateTimeField(default=utcnow)
    allocated_at = DateTimeField(null=True)

    class Meta:
        table_name = "voucher_code"
        indexes = ((("package", "order_ref", "id"), False),)  # the next free code


class VoucherStockAlert(BaseModel):
    """A package whose free stock fell under the threshold and was reported.
    Deleted once it is restocked, so the next crossing is reported again."""
    package = ForeignKeyField(Package, unique=True, on_delete="CASCADE")
    free = IntegerField()  # free codes when the crossing was seen
    alerted_at = DateTimeField(default=utcnow)
    mailed_at = DateTimeField(null=True)  # NULL: not (yet) e-mailed

    class Meta:
        table_name = "voucher_stock_alert"
