"""Every built-in payment provider and delivery backend passes the contract kit
(topup.testing) that third-party plugins are held to."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe
from cryptography.fernet import Fernet

from topup import signing
from topup.testing import DeliveryBackendContract, PaymentProviderContract, shop
from topup_plugins.digiflazz.backend import DigiflazzDelivery, ref_id_for
from topup_plugins.manual import ManualFulfilment, ManualTask
from topup_plugins.operator_webhook.backend import SIGNATURE_HEADER, OperatorWebhook
from topup_plugins.qr.common import NOTIFICATION_HEADER
from topup_plugins.qr.pix import Pix
from topup_plugins.qr.promptpay import PromptPay
from topup_plugins.qr.qris import QRIS
from topup_plugins.qr.sepa import SepaTransfer
from topup_plugins.qr.upi import UPI
from topup_plugins.qr.vietqr import VietQR
from topup_plugins.sandbox import signing as sandbox_signing
from topup_plugins.sandbox.delivery import SandboxCredit, SandboxDelivery
from topup_plugins.sandbox.payment import SandboxPayment
from topup_plugins.stripe_checkout.provider import StripeCheckout
from topup_plugins.vouchers import stock
from topup_plugins.vouchers.backend import VoucherDelivery
from topup_plugins.vouchers.models import VoucherCode
from topup_plugins.xendit.ewallet import WALLETS

from tests.plugins.digiflazz_server import FakeDigiflazz
from tests.plugins.test_qr import SETTINGS as QR_SETTINGS
from tests.plugins import test_stripe
from tests.plugins.test_stripe import SECRET_KEY as STRIPE_KEY
from tests.plugins.test_stripe import WEBHOOK_SECRET as STRIPE_WEBHOOK_SECRET
from tests.plugins.test_stripe import CheckoutAPI, event_body
from tests.plugins.test_vietqr import SETTINGS as VIETQR_SETTINGS
from tests.plugins.test_xendit import SECRET as XENDIT_SECRET
from tests.plugins.test_xendit import TOKEN as XENDIT_TOKEN
from tests.plugins.test_xendit import FakeXendit
from tests.plugins.test_xendit import callback as xendit_callback

# --- payment providers ---------------------------------------------------------------


class TestSandboxPayment(PaymentProviderContract):
    provider_class = SandboxPayment
    settings = {"webhook_secret": shop.SANDBOX_SECRET}
    country = "US"
    signature_header = sandbox_signing.HEADER

    def valid_webhook(self, payment):
        body = json.dumps({"id": f"evt_{payment.provider_ref}_succeeded",
                           "type": "payment.succeeded", "created": 1,
                           "data": {"payment_id": payment.provider_ref,
                                    "reference": payment.order.public_id,
                                    "amount": payment.amount,
                                    "currency": payment.currency}}).encode()
        return body, {"Content-Type": "application/json",
                      sandbox_signing.HEADER: sandbox_signing.sign(shop.SANDBOX_SECRET, body)}


BANK_SECRET = "bank-notification-secret-" + "b" * 16


class BankNotified(PaymentProviderContract):
    """The offline QR and transfer methods, confirmed by a signed bank notification."""
    signature_header = NOTIFICATION_HEADER

    def valid_webhook(self, payment):
        body = json.dumps({"id": f"bank-{payment.provider_ref}", "type": "payment.received",
                           "reference": payment.provider_ref, "amount": payment.amount,
                           "currency": payment.currency}).encode()
        return body, {"Content-Type": "application/json",
                      NOTIFICATION_HEADER: signing.sign(BANK_SECRET, body)}


def bank(settings: dict) -> dict:
    return {**settings, "notification_secret": BANK_SECRET}


class TestPix(BankNotified):
    provider_class, country, settings = Pix, "BR", bank(QR_SETTINGS["pix"])


class TestPromptPay(BankNotified):
    provider_class, country = PromptPay, "TH"
    settings = bank(QR_SETTINGS["promptpay"])


class TestQRIS(BankNotified):
    provider_class, country, settings = QRIS, "ID", bank(QR_SETTINGS["qris"])


class TestUPI(BankNotified):
    provider_class, country, settings = UPI, "IN", bank(QR_SETTINGS["upi"])


class TestVietQR(BankNotified):
    provider_class, country, settings = VietQR, "VN", bank(VIETQR_SETTINGS)


class TestSepa(BankNotified):
    provider_class, country, settings = SepaTransfer, "DE", bank(QR_SETTINGS["sepa"])


@pytest.fixture(scope="module")
def fake_xendit():
    fake = FakeXendit()
    yield fake
    fake.stop()


class XenditContract(PaymentProviderContract):
    """Xendit e-wallets against the fake Xendit API: the callback's token is
    checked, then the charge is fetched again, so the callback body is not trusted."""
    signature_header = "x-callback-token"

    @pytest.fixture
    def topup_settings(self, fake_xendit):
        self.fake = fake_xendit
        return {"xendit": {"secret_key": XENDIT_SECRET, "callback_token": XENDIT_TOKEN,
                           "api_base": fake_xendit.url, "timeout": 2}}

    def valid_webhook(self, payment):
        self.fake.settle(payment.provider_ref, "SUCCEEDED")
        return xendit_callback(payment.provider_ref), {
            "Content-Type": "application/json", "x-callback-token": XENDIT_TOKEN}


WALLET = {wallet.id: wallet for wallet in WALLETS}


class TestXenditDana(XenditContract):
    provider_class, country = WALLET["xendit_dana"], "ID"


class TestXenditGCash(XenditContract):
    provider_class, country = WALLET["xendit_gcash"], "PH"


localstripe = test_stripe.localstripe  # its module-scoped fixture: localstripe in a subprocess


@pytest.fixture(scope="module")
def checkout_api(localstripe):
    api = CheckoutAPI(localstripe)
    yield api
    api.close()


class TestStripeCheckout(PaymentProviderContract):
    """Stripe Checkout against localstripe and the local Checkout Sessions API
    (tests/plugins/test_stripe.py); events signed by the Stripe SDK's own signer."""
    provider_class = StripeCheckout
    country = "US"
    signature_header = "Stripe-Signature"

    @pytest.fixture
    def topup_settings(self, checkout_api):
        self.api, self.intents = checkout_api, {}
        return {"stripe_checkout": {"secret_key": STRIPE_KEY,
                                    "webhook_secret": STRIPE_WEBHOOK_SECRET,
                                    "api_base": checkout_api.url}}

    def valid_webhook(self, payment):
        """The buyer pays (a real PaymentIntent, so that it can be refunded), the
        session completes, and Stripe sends checkout.session.completed."""
        if payment.provider_ref not in self.intents:
            sdk = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": self.api.url})
            self.intents[payment.provider_ref] = sdk.v1.payment_intents.create(params={
                "amount": payment.amount, "currency": payment.currency.lower(),
                "payment_method": "pm_card_visa", "confirm": True,
                "payment_method_types": ["card"]}).id
        session = self.api.complete(payment.provider_ref,
                                    payment_intent=self.intents[payment.provider_ref])
        body = event_body(session, event_id="evt_" + payment.provider_ref[3:])
        return body, {"Content-Type": "application/json", "Stripe-Signature":
                      stripe.WebhookSignature.generate_signature_header(
                          body.decode(), STRIPE_WEBHOOK_SECRET)}


# --- delivery backends ----------------------------------------------------------------


class TestSandboxDelivery(DeliveryBackendContract):
    backend_class = SandboxDelivery

    def credits(self, order):
        return (SandboxCredit.select().where(SandboxCredit.order_ref == order.public_id,
                                             SandboxCredit.credited_at.is_null(False)).count())


class TestManual(DeliveryBackendContract):
    """Manual fulfilment hands each order to the operator once; the hand-off is its credit."""
    backend_class = ManualFulfilment

    def credits(self, order):
        return ManualTask.select().where(ManualTask.order_ref == order.public_id).count()


class TestVouchers(DeliveryBackendContract):
    backend_class = VoucherDelivery
    settings = {"key": Fernet.generate_key().decode()}

    def prepare(self, order):
        from flask import current_app

        vault = current_app.extensions["topup"].backends["vouchers"].vault
        code = f"CODE-{order.id:04d}-{order.public_id[:6]}"
        assert stock.import_codes(vault, order.package, [(1, code)]).imported == 1

    def credits(self, order):
        return VoucherCode.select().where(VoucherCode.order_ref == order.public_id).count()


OPERATOR_SECRET = "owh_contract_" + "o" * 27


class Receiver:
    """The operator's fulfilment system on loopback, as docs/backends/operator-webhook.md
    asks: verify the signature, credit once per order id, answer the same reference."""

    def __init__(self):
        self.credited: dict[str, str] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    signing.verify(OPERATOR_SECRET, raw, self.headers.get(SIGNATURE_HEADER))
                except signing.SignatureError:
                    return self.answer(401, {"error": "bad signature"})
                order_id = json.loads(raw)["id"]
                with receiver.lock:
                    reference = receiver.credited.setdefault(
                        order_id, f"OP-{len(receiver.credited) + 1}")
                self.answer(200, {"reference": reference})

            def answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/deliveries"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.stop()


class TestOperatorWebhook(DeliveryBackendContract):
    backend_class = OperatorWebhook

    @pytest.fixture
    def topup_settings(self, receiver):
        self.receiver = receiver
        return {"operator_webhook": {"url": receiver.url, "secret": OPERATOR_SECRET,
                                     "timeout_seconds": 2}}

    def credits(self, order):
        return int(order.public_id in self.receiver.credited)


DIGIFLAZZ_KEY = "dev-key-" + "d" * 24


@pytest.fixture(scope="module")
def fake_digiflazz():
    fake = FakeDigiflazz("tokokoin", DIGIFLAZZ_KEY, skus={"TTC70"}).start()
    yield fake
    fake.stop()


class TestDigiflazz(DeliveryBackendContract):
    backend_class = DigiflazzDelivery

    @pytest.fixture
    def topup_settings(self, fake_digiflazz):
        self.fake = fake_digiflazz
        return {"digiflazz": {"username": "tokokoin", "api_key": DIGIFLAZZ_KEY,
                              "base_url": fake_digiflazz.url, "timeout_seconds": 2,
                              "skus": {f"{shop.PRODUCT_SLUG}:{shop.PACKAGE_QUANTITY}": "TTC70"}}}

    def credits(self, order):
        refs = {ref_id_for(order.public_id, seq) for seq in range(5)}
        return sum(1 for ref, held in self.fake.ledger.items()
                   if ref in refs and held["status"] == "Sukses")
