"""VietQR (Vietnam): the NAPAS 247 EMV QR for inter-bank transfers, which every
Vietnamese banking app scans. Tag 38 carries the NAPAS GUID (A000000727), the
beneficiary (acquirer BIN + account or card number) and the service code.

Settings (PLUGINS["vietqr"]): bank_bin, the bank's 6-digit NAPAS BIN (970415
VietinBank, 970436 Vietcombank, ...); account, the operator's account number
(or card number with service = "card"), up to 19 digits; name, the account
holder as the buyer should see it; optional service, "account" (default) or "card".
"""
from __future__ import annotations

import re

from flask_babel import gettext

from topup import hookimpl
from topup.money import Money
from topup_plugins.qr import emv
from topup_plugins.qr.common import OfflineProvider, order_reference

GUID = "A000000727"
SERVICES = {"account": "QRIBFTTA", "card": "QRIBFTTC"}  # inter-bank fund transfer to ...
BIN = re.compile(r"\d{6}")
ACCOUNT = re.compile(r"\d{1,19}")
PURPOSE_LIMIT = 25  # tag 62-08 as the reference implementations cap it


def vietqr_payload(*, bank_bin: str, account: str, service: str = "account",
                   amount: Money | None = None, purpose: str | None = None) -> str:
    """A VietQR as the reference implementations write it (tags 00 01 38 53 [54]
    58 [62] 63); 01 is "12" when an amount is set, and the amount is whole dong."""
    if not BIN.fullmatch(bank_bin):
        raise ValueError(f"{bank_bin!r} is not a 6-digit NAPAS bank BIN")
    if not ACCOUNT.fullmatch(account):
        raise ValueError("a VietQR account or card number is 1 to 19 digits")
    if service not in SERVICES:
        raise ValueError(f"VietQR service is one of {', '.join(SERVICES)}, not {service!r}")
    items = [("01", emv.DYNAMIC if amount is not None else emv.STATIC),
             ("38", [("00", GUID), ("01", [("00", bank_bin), ("01", account)]),
                     ("02", SERVICES[service])]),
             ("53", emv.NUMERIC_CURRENCY["VND"])]
    if amount is not None:
        if amount.currency != "VND":
            raise ValueError("VietQR is paid in VND")
        items.append(("54", emv.format_amount(amount, 0)))
    items.append(("58", "VN"))
    if purpose:
        text = emv.ascii_text(purpose, PURPOSE_LIMIT)
        if text:
            items.append(("62", [("08", text)]))
    return emv.build(items)


class VietQR(OfflineProvider):
    id = "vietqr"
    name = "VietQR"
    countries = frozenset({"VN"})
    currencies = frozenset({"VND"})
    min_amount = {"VND": 1}  # 1 dong; VND has no minor unit
    required_settings = ("bank_bin", "account", "name")

    def __init__(self, settings: dict):
        super().__init__(settings)
        self.bank_bin = self.setting("bank_bin")
        self.account = re.sub(r"[\s-]", "", self.setting("account"))
        self.service = self.setting("service", "account").lower()
        self.holder = emv.ascii_text(self.setting("name"), 50) or self.setting("name")
        # A wrong BIN, account or service fails at start-up, loudly.
        vietqr_payload(bank_bin=self.bank_bin, account=self.account, service=self.service)

    def start(self, order, return_url: str):
        reference = order_reference(order)
        payload = vietqr_payload(bank_bin=self.bank_bin, account=self.account,
                                 service=self.service,
                                 amount=Money(order.amount, order.currency), purpose=reference)
        return self.action(order, reference=reference, payload=payload, code=payload)

    def instruction_lines(self, order) -> list[str]:
        names = {"name": self.holder, "number": self.account, "bin": self.bank_bin}
        pay_to = (gettext("Pay to: %(name)s (card %(number)s, bank BIN %(bin)s)", **names)
                  if self.service == "card"
                  else gettext("Pay to: %(name)s (account %(number)s, bank BIN %(bin)s)", **names))
        return [pay_to, gettext("Scan the QR code in your banking app, pay exactly this amount "
                                "and keep the reference as the transfer message.")]


@hookimpl
def register_payment_providers():
    return [VietQR]
