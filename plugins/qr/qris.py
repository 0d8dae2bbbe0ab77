"""QRIS (Indonesia): the operator's own static merchant QRIS (printed at the
counter, issued by their bank or e-wallet) made dynamic for each order: tag 01
becomes "12", the amount goes in tag 54, the CRC is recomputed. Any QRIS app
(bank, GoPay, OVO, DANA, ShopeePay...) pays it to the operator's account.

Settings (PLUGINS["qris"]): qris, the static QRIS string (decode the printed
QR once, e.g. with a phone's QR reader); optional merchant_name to show.
"""
from __future__ import annotations

from flask_babel import gettext

from topup import hookimpl
from topup.money import Money, digits
from topup_plugins.qr import emv
from topup_plugins.qr.common import OfflineProvider, order_reference

QRIS_GUI = "ID.CO.QRIS.WWW"


def parse_qris(payload: str) -> list[tuple[str, str]]:
    """A merchant QRIS, checked: valid EMV with a good CRC, rupiah, Indonesia."""
    items = emv.parse_checked(payload)
    tags = dict(items)
    if tags.get("53") != emv.NUMERIC_CURRENCY["IDR"] or tags.get("58") != "ID":
        raise emv.EMVError("not a QRIS: currency (53) must be 360 and country (58) ID")
    if not any(QRIS_GUI in value.upper() for tag, value in items if "26" <= tag <= "51"):
        raise emv.EMVError(f"not a QRIS: no merchant account template with {QRIS_GUI}")
    return items


def with_amount(payload: str, amount: Money) -> str:
    """The QRIS with tag 01 = "12" and tag 54 = amount in whole rupiah (replaced
    if present, else inserted before the first tag above 54), CRC recomputed.
    Every other data object is kept as it was, in its place."""
    if amount.currency != "IDR":
        raise ValueError("QRIS is paid in IDR")
    value = emv.format_amount(amount, 0)
    items = [(tag, val) for tag, val in parse_qris(payload)
             if tag not in ("00", "01", "54", emv.CRC_TAG)]
    position = next((i for i, (tag, _) in enumerate(items) if tag > "54"), len(items))
    items.insert(position, ("54", value))
    return emv.build([("01", emv.DYNAMIC), *items])


class QRIS(OfflineProvider):
    id = "qris"
    name = "QRIS"
    countries = frozenset({"ID"})
    currencies = frozenset({"IDR"})
    min_amount = {"IDR": 1_00}  # Rp 1
    max_amount = {"IDR": 10_000_000_00}  # Bank Indonesia's QRIS limit per payment: Rp 10 million
    required_settings = ("qris",)

    def __init__(self, settings: dict):
        super().__init__(settings)
        self.qris = self.setting("qris")
        items = dict(parse_qris(self.qris))  # a damaged or foreign QR fails at start-up, loudly
        self.merchant_name = self.setting("merchant_name") or items.get("59", "")

    def accepts(self, amount: Money) -> bool:
        """QRIS amounts are whole rupiah."""
        return super().accepts(amount) and amount.amount % 10 ** digits("IDR") == 0

    def start(self, order, return_url: str):
        reference = order_reference(order)
        payload = with_amount(self.qris, Money(order.amount, order.currency))
        return self.action(order, reference=reference, payload=payload, code=payload)

    def instruction_lines(self, order) -> list[str]:
        return [gettext("Pay to: %(name)s", name=self.merchant_name),
                gettext("Scan the QR code with any QRIS app; the amount is filled in.")]


@hookimpl
def register_payment_providers():
    return [QRIS]
