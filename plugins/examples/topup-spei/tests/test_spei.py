"""topup-spei against topup's contract kit, and its own details."""
from __future__ import annotations

import json

import pytest

from topup import signing
from topup.money import Money
from topup.payments import NotConfigured, WebhookRejected
from topup.testing import PaymentProviderContract, PaymentProviderSetup
from topup_spei import HEADER, Spei, clabe_valid

SECRET = "spei-notification-secret-" + "s" * 16
CLABE = "002010077777777771"  # Banamex's published example: a valid check digit
SETTINGS = {"clabe": CLABE, "beneficiary": "Mi Tienda SA de CV", "bank": "Banamex",
            "notification_secret": SECRET}


def notification(payment, *, monto=None, cuenta=CLABE, rastreo="MBAN0100240715000001"):
    pesos = Money(payment.amount, payment.currency).to_decimal() if monto is None else monto
    body = json.dumps({"claveRastreo": rastreo, "conceptoPago": payment.provider_ref,
                       "cuentaBeneficiario": cuenta, "monto": str(pesos)}).encode()
    return body, {"Content-Type": "application/json", HEADER: signing.sign(SECRET, body)}


class TestSpeiContract(PaymentProviderContract):
    provider_class = Spei
    settings = SETTINGS
    country = "MX"
    signature_header = HEADER

    def valid_webhook(self, payment):
        return notification(payment)


@pytest.mark.parametrize("clabe, valid", [
    (CLABE, True), ("032180000118359719", True), ("002010077777777772", False),
    ("00201007777777777", False), ("00201007777777777a", False)])
def test_clabe_check_digit(clabe, valid):
    assert clabe_valid(clabe) is valid


def test_needs_a_clabe_and_a_beneficiary_and_refuses_a_mistyped_clabe():
    with pytest.raises(NotConfigured):
        Spei({"beneficiary": "Mi Tienda"})
    with pytest.raises(ValueError, match="CLABE"):
        Spei({**SETTINGS, "clabe": "002010077777777772"})
    assert Spei({**SETTINGS, "clabe": "002 010 07777777777 1"}).clabe == CLABE


class TestNotifications(PaymentProviderSetup):
    """The kit's shop, for notifications the contract does not cover."""
    provider_class = Spei
    settings = SETTINGS
    country = "MX"
    signature_header = HEADER
    amount = 1688_00

    @pytest.mark.parametrize("change", [{"cuenta": "032180000118359719"}, {"monto": "abc"},
                                        {"rastreo": "not an id"}])
    def test_odd_notifications_are_rejected(self, topup_order, change):
        with pytest.raises(WebhookRejected):
            self.parse(*notification(topup_order.latest_payment(), **change))

    def test_pesos_become_centavos_exactly(self, topup_order):
        [event] = self.parse(*notification(topup_order.latest_payment(), monto="1688.00"))
        assert event.amount == Money(1688_00, "MXN") == topup_order.total

    def test_the_buyer_is_told_the_clabe_and_concepto(self, topup_client, topup_order):
        page = topup_client.get(f"/orders/{topup_order.public_id}").get_data(as_text=True)
        assert CLABE in page and topup_order.latest_payment().provider_ref in page
