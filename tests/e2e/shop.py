"""What the browser tests share beyond the fixtures: the local payment methods
switched on, and the shop's words in each language."""
from __future__ import annotations

from flask_babel import force_locale, gettext

from tests.plugins.test_qr import STATIC_QRIS  # a made-up static merchant QRIS

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
