"""PromptPay (Thailand): an EMV QR with the PromptPay credit-transfer template
(tag 29, AID A000000677010111), as the Bank of Thailand's Thai QR Code standard
defines and every Thai banking app scans.

Settings (PLUGINS["promptpay"]): id, the operator's PromptPay ID: a mobile
number (0812345678 or +66 81 234 5678), a 13-digit national ID / tax ID, or a
15-digit e-wallet ID; optional merchant_name (shown to the buyer only).
"""
from __future__ import annotations

import re

from flask_babel import gettext

from topup import hookimpl
from topup.money import Money
from topup_plugins.qr import emv
from topup_plugins.qr.common import OfflineProvider, order_reference

AID = "A000000677010111"
PHONE, NATIONAL_ID, EWALLET = "01", "02", "03"


def promptpay_target(raw: str) -> tuple[str, str]:
    """(sub-tag, value) of tag 29 for a PromptPay ID. A phone number becomes
    "0066" + the number without its leading 0, zero-padded to 13 digits."""
    digits = re.sub(r"\D", "", raw)
    if len(digits) == 15:
        return EWALLET, digits
    if len(digits) == 13:
        return NATIONAL_ID, digits
    if len(digits) == 10 and digits.startswith("0"):
        local = digits[1:]
    elif len(digits) == 11 and digits.startswith("66"):
        local = digits[2:]
    else:
        raise ValueError(f"{raw!r} is not a PromptPay ID (Thai mobile number, "
                         "13-digit national/tax ID or 15-digit e-wallet ID)")
    return PHONE, ("66" + local).rjust(13, "0")


def promptpay_payload(target: str, amount: Money | None = None) -> str:
    """The payload as the promptpay-qr reference implementation writes it
    (tags 00 01 29 58 53 [54] 63); 01 is "12" when an amount is set."""
    items = [("01", emv.DYNAMIC if amount is not None else emv.STATIC),
             ("29", [("00", AID), promptpay_target(target)]),
             ("58", "TH"), ("53", emv.NUMERIC_CURRENCY["THB"])]
    if amount is not None:
        if amount.currency != "THB":
            raise ValueError("PromptPay is paid in THB")
        items.append(("54", emv.format_amount(amount, 2)))
    return emv.build(items)


class PromptPay(OfflineProvider):
    id = "promptpay"
    name = "PromptPay"
    countries = frozenset({"TH"})
    currencies = frozenset({"THB"})
    min_amount = {"THB": 1}
    required_settings = ("id",)

    def __init__(self, settings: dict):
        super().__init__(settings)
        self.target = self.setting("id")
        promptpay_target(self.target)  # a wrong ID fails at start-up, loudly
        self.merchant_name = self.setting("merchant_name")

    def start(self, order, return_url: str):
        reference = order_reference(order)
        payload = promptpay_payload(self.target, Money(order.amount, order.currency))
        return self.action(order, reference=reference, payload=payload, code=payload)

    def instruction_lines(self, order) -> list[str]:
        pay_to = (gettext("Pay to: %(name)s", name=self.merchant_name) if self.merchant_name
                  else gettext("Pay by PromptPay"))
        return [pay_to, gettext("Scan the QR code in your banking app "
                                "and pay exactly this amount.")]


@hookimpl
def register_payment_providers():
    return [PromptPay]
