"""Pix (Brazil): a BR Code, the EMV QR the Banco Central do Brasil specifies
("Manual de Padrões para Iniciação do Pix"). Any Brazilian banking app scans
it or takes it pasted ("Pix Copia e Cola").

Settings (PLUGINS["pix"]): key (the operator's Pix key: CPF/CNPJ digits, e-mail,
+55 phone or random key), merchant_name, merchant_city; optional description.
"""
from __future__ import annotations

import re

from flask_babel import gettext

from topup import hookimpl
from topup.money import Money
from topup_plugins.qr import emv
from topup_plugins.qr.common import OfflineProvider, order_reference

GUI = "br.gov.bcb.pix"
TXID = re.compile(r"[A-Za-z0-9]{1,25}")


def normalize_key(key: str) -> str:
    """CPF/CNPJ keys are written as digits only; other keys are kept as they are."""
    key = key.strip()
    digits = re.sub(r"\D", "", key)
    if re.fullmatch(r"[\d.\-/ ]+", key) and len(digits) in (11, 14):
        return digits
    return key


def pix_payload(*, key: str, merchant_name: str, merchant_city: str, amount: Money | None = None,
                txid: str = "***", description: str | None = None, one_time: bool = False) -> str:
    """A BR Code. one_time adds tag 01 = "12" (the code may be paid only once);
    txid is "***" (none) or up to 25 letters and digits, in tag 62-05."""
    account = [("00", GUI), ("01", key)]
    if description:
        account.append(("02", emv.ascii_text(description, 99)))
    if len(emv.encode(account)) > 99:
        raise ValueError("the Pix key and description are too long for one BR Code")
    if txid != "***" and not TXID.fullmatch(txid):
        raise ValueError("a Pix txid is 1 to 25 letters and digits")
    items = [("01", emv.DYNAMIC)] if one_time else []
    items += [("26", account), ("52", "0000"), ("53", emv.NUMERIC_CURRENCY["BRL"])]
    if amount is not None:
        if amount.currency != "BRL":
            raise ValueError("Pix is paid in BRL")
        items.append(("54", emv.format_amount(amount, 2)))
    items += [("58", "BR"), ("59", emv.ascii_text(merchant_name, 25)),
              ("60", emv.ascii_text(merchant_city, 15)), ("62", [("05", txid)])]
    return emv.build(items)


class Pix(OfflineProvider):
    id = "pix"
    name = "Pix"
    countries = frozenset({"BR"})
    currencies = frozenset({"BRL"})
    min_amount = {"BRL": 1}  # R$ 0.01
    required_settings = ("key", "merchant_name", "merchant_city")

    def __init__(self, settings: dict):
        super().__init__(settings)
        self.key = normalize_key(self.setting("key"))
        self.merchant_name = emv.ascii_text(self.setting("merchant_name"), 25)
        self.merchant_city = emv.ascii_text(self.setting("merchant_city"), 15)
        self.description = self.setting("description") or None
        if not self.merchant_name or not self.merchant_city:
            raise ValueError("pix: merchant_name and merchant_city need letters or digits")
        # Fails now, not at the first order, if the key or description cannot fit.
        pix_payload(key=self.key, merchant_name=self.merchant_name,
                    merchant_city=self.merchant_city, description=self.description)

    def start(self, order, return_url: str):
        reference = order_reference(order)
        payload = pix_payload(key=self.key, merchant_name=self.merchant_name,
                              merchant_city=self.merchant_city,
                              amount=Money(order.amount, order.currency), txid=reference,
                              description=self.description, one_time=True)
        return self.action(order, reference=reference, payload=payload, code=payload)

    def instruction_lines(self, order) -> list[str]:
        return [gettext("Pay to: %(name)s (Pix key %(key)s)", name=self.merchant_name,
                        key=self.key),
                gettext("Scan the QR code in your bank's app, "
                        "or paste the code under Pix Copia e Cola.")]


@hookimpl
def register_payment_providers():
    return [Pix]
