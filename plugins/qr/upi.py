"""UPI (India): the NPCI "upi://pay" deep link, shown as a QR code for a second
device and as a tap-to-pay link on the buyer's phone (it opens their UPI app).

Settings (PLUGINS["upi"]): vpa (the operator's UPI ID, name@bank), name (the
payee name); optional mc (merchant category code, for merchant VPAs).
"""
from __future__ import annotations

import re
from urllib.parse import quote

from flask_babel import gettext

from topup import hookimpl
from topup.money import Money
from topup_plugins.qr.common import OfflineProvider, order_reference

VPA = re.compile(r"[A-Za-z0-9.\-_]{2,256}@[A-Za-z][A-Za-z0-9.\-]{1,64}")


def upi_uri(*, vpa: str, name: str, amount: Money, note: str, reference: str,
            mc: str | None = None) -> str:
    """upi://pay?pa=&pn=&am=&cu=INR&tn=&tr=[&mc=], each value percent-encoded
    (space as %20, never +; "@" stays literal, as UPI apps expect in pa)."""
    if amount.currency != "INR":
        raise ValueError("UPI is paid in INR")
    params = [("pa", vpa), ("pn", name), ("am", f"{amount.to_decimal():.2f}"), ("cu", "INR"),
              ("tn", note), ("tr", reference)]
    if mc:
        params.append(("mc", mc))
    return "upi://pay?" + "&".join(f"{key}={quote(value, safe='@')}" for key, value in params)


class UPI(OfflineProvider):
    id = "upi"
    name = "UPI"
    countries = frozenset({"IN"})
    currencies = frozenset({"INR"})
    min_amount = {"INR": 1_00}
    max_amount = {"INR": 1_00_000_00}  # NPCI's general per-transaction limit, ₹1,00,000
    required_settings = ("vpa", "name")

    def __init__(self, settings: dict):
        super().__init__(settings)
        self.vpa = self.setting("vpa")
        if not VPA.fullmatch(self.vpa):
            raise ValueError(f"upi: {self.vpa!r} is not a UPI ID (name@bank)")
        self.payee = self.setting("name")[:50]
        self.mc = self.setting("mc") or None
        if self.mc and not re.fullmatch(r"\d{4}", self.mc):
            raise ValueError("upi: mc is a 4-digit merchant category code")

    def start(self, order, return_url: str):
        reference = order_reference(order)
        uri = upi_uri(vpa=self.vpa, name=self.payee, amount=Money(order.amount, order.currency),
                      note=f"Order {reference}", reference=reference, mc=self.mc)
        return self.action(order, reference=reference, payload=uri, code=self.vpa, url=uri)

    def instruction_lines(self, order) -> list[str]:
        return [gettext("Pay to: %(name)s (UPI ID %(upi_id)s)", name=self.payee,
                        upi_id=self.vpa),
                gettext("Scan the QR code with any UPI app, or on this phone tap the Pay "
                        "button. Paying to the UPI ID by hand? Put the reference in the note.")]


@hookimpl
def register_payment_providers():
    return [UPI]
