"""What the browser tests share beyond the fixtures: the local payment methods
switched on, and the shop's words in each language."""
from __future__ import annotations

from flask_babel import force_locale, gettext

from topup_plugins.qr import emv

# A made-up static merchant QRIS, shaped like the real ones (tests/plugins/test_qr.py).
STATIC_QRIS = emv.build([
    ("01", "11"),
    ("26", [("00", "ID.CO.EXAMPLE.WWW"), ("01", "936000000000000001"), ("02", "EXAMPLE01"),
            ("03", "UMI")]),
    ("51", [("00", "ID.CO.QRIS.WWW"), ("02", "ID1020000000001"), ("03", "UMI")]),
    ("52", "5411"), ("53", "360"), ("58", "ID"), ("59", "TOKO CONTOH"), ("60", "JAKARTA"),
    ("61", "10110"), ("62", [("07", "A01")]),
])
# Each locale's country pays at home: QRIS, Pix, SPEI (the example plugin), PromptPay, VietQR.
LOCAL_METHODS = {
    "qris": {"qris": STATIC_QRIS},
    "pix": {"key": "123e4567-e12b-12d1-a456-426655440000", "merchant_name": "Fulano de Tal",
            "merchant_city": "BRASILIA"},
    "spei": {"clabe": "002010077777777771", "beneficiary": "Mi Tienda SA de CV",
             "bank": "Banamex"},
    "promptpay": {"id": "080-123-4567", "merchant_name": "Topup Thailand"},
    "vietqr": {"bank_bin": "970415", "account": "0011001932418", "name": "Cửa hàng Topup"},
}


def with_local_methods(config: dict) -> dict:
    config["PLUGINS"] = {**config["PLUGINS"], **LOCAL_METHODS}
    return config


def words(app, locale: str):
    """t("Buy") as the shop writes it in this locale."""
    def t(message: str, **values) -> str:
        with app.test_request_context(), force_locale(locale):
            return gettext(message, **values)
    return t
