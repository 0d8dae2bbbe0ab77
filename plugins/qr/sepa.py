"""SEPA credit transfer (euro): the EPC QR code ("GiroCode", EPC069-12 v002)
that European banking apps scan to prefill a transfer, with the same details
as text for typing by hand.

Settings (PLUGINS["sepa"]): iban, name (the account holder, as the bank has
it); optional bic (required by some banks outside the EEA), purpose (4-letter
ISO 20022 purpose code).
"""
from __future__ import annotations

import re

from flask_babel import gettext

from topup import hookimpl
from topup.money import Money
from topup_plugins.qr.common import OfflineProvider, order_reference

# Euro countries in SEPA (the euro area, Bulgaria from 2026, and the
# microstates using the euro).
EURO_COUNTRIES = frozenset({
    "AT", "BE", "BG", "CY", "DE", "EE", "ES", "FI", "FR", "GR", "HR", "IE", "IT", "LT",
    "LU", "LV", "MT", "NL", "PT", "SI", "SK", "AD", "MC", "SM", "VA",
})

# IBAN lengths of SEPA countries (ISO 13616 registry); others are checked by mod 97 only.
IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
    "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27, "HR": 21, "HU": 28,
    "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31,
    "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "VA": 22,
}
BIC = re.compile(r"[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?")
MAX_EUR_CENTS = 999_999_999_99  # EPC069-12: EUR 0.01 to 999999999.99


def normalize_iban(raw: str) -> str:
    """The IBAN in electronic form (no spaces, upper case), or ValueError:
    country code, known length, and ISO 7064 mod 97-10 check digits."""
    iban = re.sub(r"\s+", "", raw).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", iban):
        raise ValueError(f"{raw!r} is not an IBAN")
    expected = IBAN_LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        raise ValueError(f"a {iban[:2]} IBAN has {expected} characters, {raw!r} has {len(iban)}")
    rearranged = iban[4:] + iban[:4]
    if int("".join(str(int(c, 36)) for c in rearranged)) % 97 != 1:
        raise ValueError(f"{raw!r} is not a valid IBAN (check digits)")
    return iban


def format_iban(iban: str) -> str:
    """Print form, in groups of four."""
    return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))


def epc_payload(*, name: str, iban: str, amount: Money, remittance: str, bic: str = "",
                purpose: str = "") -> str:
    """EPC069-12 version 002, UTF-8, SCT: one element per line (LF), the
    unstructured remittance in line 11, trailing empty elements left out."""
    if amount.currency != "EUR" or not 1 <= amount.amount <= MAX_EUR_CENTS:
        raise ValueError("an EPC QR code carries EUR 0.01 to 999999999.99")
    lines = ["BCD", "002", "1", "SCT", bic, name[:70], iban,
             f"EUR{amount.to_decimal():.2f}", purpose, "", remittance[:140]]
    payload = "\n".join(lines).rstrip("\n")
    if len(payload.encode("utf-8")) > 331:
        raise ValueError("an EPC QR payload is at most 331 bytes")
    return payload


class SepaTransfer(OfflineProvider):
    id = "sepa"
    name = "SEPA bank transfer"
    countries = EURO_COUNTRIES
    currencies = frozenset({"EUR"})
    min_amount = {"EUR": 1}
    max_amount = {"EUR": MAX_EUR_CENTS}
    required_settings = ("iban", "name")
    expiry_seconds = 4 * 24 * 3600  # an ordinary SEPA credit transfer takes up to two business days

    def __init__(self, settings: dict):
        super().__init__(settings)
        self.iban = normalize_iban(self.setting("iban"))  # ValueError: listed as a plugin error
        self.holder = self.setting("name")[:70]
        self.bic = self.setting("bic").replace(" ", "").upper()
        if self.bic and not BIC.fullmatch(self.bic):
            raise ValueError(f"sepa: {self.bic!r} is not a BIC")
        self.purpose = self.setting("purpose").upper()
        if self.purpose and not re.fullmatch(r"[A-Z]{4}", self.purpose):
            raise ValueError("sepa: purpose is a 4-letter code")

    def start(self, order, return_url: str):
        reference = order_reference(order)
        payload = epc_payload(name=self.holder, iban=self.iban, bic=self.bic,
                              amount=Money(order.amount, order.currency), remittance=reference,
                              purpose=self.purpose)
        return self.action(order, reference=reference, payload=payload, code=reference)

    def instruction_lines(self, order) -> list[str]:
        lines = [gettext("Beneficiary: %(name)s", name=self.holder),
                 f"IBAN: {format_iban(self.iban)}"]
        if self.bic:
            lines.append(f"BIC: {self.bic}")
        lines.append(gettext("Scan the QR code in your banking app, or type these details. "
                             "Put the reference, and nothing else, in the payment description."))
        return lines


@hookimpl
def register_payment_providers():
    return [SepaTransfer]
