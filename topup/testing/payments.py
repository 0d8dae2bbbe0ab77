"""PaymentProviderContract: what the shop relies on from every payment provider.

    class TestMyPayContract(PaymentProviderContract):
        provider_class = MyPay
        settings = {"api_key": "test", "webhook_secret": SECRET}
        country = "PH"
        signature_header = "MyPay-Signature"

        def valid_webhook(self, payment):
            body = json.dumps({...payment.provider_ref, payment.amount...}).encode()
            return body, {"Content-Type": "application/json",
                          "MyPay-Signature": sign(SECRET, body)}
"""
from __future__ import annotations

import re
import time

import pytest
from flask import current_app, request

from topup import orders, signing, worker
from topup.models import Delivery, Order, Payment, WebhookEvent
from topup.money import Money
from topup.payments import (EXTERNAL_ID, PaymentAction, PaymentEvent, PaymentProvider,
                            WebhookRejected)
from topup.testing import shop

ACTION_KINDS = ("redirect", "qr", "instructions")


class PaymentProviderSetup(shop.PluginSetup):
    """The kit's shop, set up for one provider, without the contract's tests:
    a base for an author's own tests. Set the attributes, write valid_webhook."""

    provider_class: type[PaymentProvider] = None
    _registered, _hook = "provider_class", "register_payment_providers"
    country: str = None  # a country the provider serves, one topup sells in
    amount: int | None = None  # the test package's price, minor units; default 100 major units
    signature_header: str | None = None  # the header valid_webhook signs with, for forgeries
    listing_budget_seconds = 0.25  # serves() and accepts() run on every product page

    # --- what the author writes ------------------------------------------------------

    def valid_webhook(self, payment: Payment) -> tuple[bytes, dict]:
        """(raw body, headers) of the notification the provider sends when
        `payment` (payment.provider_ref, .amount, .currency, .order) is paid in
        full, signed as the provider signs it. Built the same each call (a
        provider's retry); if your provider re-fetches the payment, make its
        fake say "paid" here."""
        raise NotImplementedError(f"{type(self).__name__} must define valid_webhook(payment)")

    def forged_webhooks(self, payment: Payment) -> list[tuple[bytes, dict]]:
        """Requests that must be refused: by default the valid body signed with
        another secret (topup.signing's scheme), and without the header."""
        if not self.signature_header:
            raise NotImplementedError(f"{type(self).__name__}: set signature_header, "
                                      "or define forged_webhooks(payment)")
        body, headers = self.valid_webhook(payment)
        unsigned = {k: v for k, v in headers.items() if k.lower() != self.signature_header.lower()}
        forged = {**unsigned, self.signature_header: signing.sign("forged-" + "x" * 24, body)}
        return [(body, forged), (body, unsigned)]

    def tamper(self, body: bytes) -> bytes:
        """The body with one fact changed: by default its last digit."""
        digits = list(re.finditer(rb"[0-9]", body))
        if not digits:
            return body + b" "
        at = digits[-1].start()
        return body[:at] + str((int(body[at:at + 1]) + 1) % 10).encode() + body[at + 1:]

    # --- wiring ----------------------------------------------------------------------

    @pytest.fixture
    def topup_country(self):
        assert self.country, f"{type(self).__name__}: set country (one the provider serves)"
        return self.country

    @pytest.fixture
    def topup_payment_method(self):
        return self.provider_class.id

    @pytest.fixture
    def topup_price(self, topup_currency):
        return self.amount or shop.default_amount(self.provider_class, topup_currency)

    def parse(self, body: bytes, headers: dict) -> list[PaymentEvent]:
        """The provider's parse_webhook on this request, as /webhooks/<id> calls it."""
        provider = current_app.extensions["topup"].providers[self.provider_class.id]
        with current_app.test_request_context(f"/webhooks/{provider.id}", method="POST",
                                              data=body, headers=headers):
            return provider.parse_webhook(request)

    def post(self, client, body: bytes, headers: dict):
        return client.post(f"/webhooks/{self.provider_class.id}", data=body, headers=headers)


class PaymentProviderContract(PaymentProviderSetup):
    """Subclass as Test<Something>: every test below runs against your provider."""

    def test_builds_from_its_settings(self, topup_app):
        registry = topup_app.extensions["topup"]
        pid = self.provider_class.id
        assert pid not in registry.not_configured, "__init__ raised NotConfigured with `settings`"
        assert not registry.errors, registry.errors
        assert isinstance(registry.providers.get(pid), self.provider_class)
        assert isinstance(pid, str) and EXTERNAL_ID.fullmatch(pid), "id must be URL-safe"
        assert isinstance(self.provider_class.name, str) and self.provider_class.name

    def test_serves_its_country_quickly(self, topup_provider, topup_country, topup_currency,
                                        topup_price):
        started = time.monotonic()
        serves = topup_provider.serves(topup_country, topup_currency)
        accepts = topup_provider.accepts(Money(topup_price, topup_currency))
        elapsed = time.monotonic() - started
        assert serves is True and accepts is True
        assert elapsed <= self.listing_budget_seconds, (
            f"serves() and accepts() took {elapsed:.2f} s: they run on every product page, "
            "so they must not call out (see docs/plugins.md, timeouts)")

    def test_is_offered_on_the_product_page(self, topup_client, topup_product, topup_country):
        page = topup_client.get(f"/{topup_product.slug}?country={topup_country}")
        assert page.status_code == 200
        assert f'value="{self.provider_class.id}"' in page.get_data(as_text=True)

    def test_limits_and_fee_are_minor_units(self, topup_provider, topup_currency, topup_price,
                                            topup_order):
        for limits in (topup_provider.min_amount, topup_provider.max_amount):
            assert all(type(v) is int and v >= 0 for v in limits.values()), limits
            assert all(re.fullmatch(r"[A-Z]{3}", c) for c in limits), limits
        low = topup_provider.min_amount.get(topup_currency)
        high = topup_provider.max_amount.get(topup_currency)
        assert low is None or high is None or low <= high
        fee = topup_provider.fee(Money(topup_price, topup_currency))
        assert isinstance(fee, Money) and fee.currency == topup_currency and fee.amount >= 0
        assert (topup_order.amount, topup_order.fee) == (topup_price + fee.amount, fee.amount)
        expiry = topup_provider.expiry_seconds
        assert expiry is None or (type(expiry) is int and expiry > 0)

    def test_start_returns_an_action_with_a_unique_reference(self, topup_order,
                                                             topup_place_order):
        payment = topup_order.latest_payment()
        assert payment.status == "started", payment.error
        action = PaymentAction.from_json(payment.action)
        assert action.kind in ACTION_KINDS
        assert EXTERNAL_ID.fullmatch(action.provider_ref)
        assert payment.provider_ref == action.provider_ref
        if action.kind == "redirect":
            assert action.url and action.url.startswith(("https://", "http://", "/"))
        if action.kind == "qr":
            assert action.qr_payload
        assert all(isinstance(line, str) for line in action.instructions)
        other = topup_place_order().latest_payment()
        assert other.provider_ref != payment.provider_ref, "two orders, one payment reference"

    def test_a_valid_webhook_pays_the_order_and_it_is_delivered(self, topup_app, topup_client,
                                                                 topup_order):
        response = self.post(topup_client, *self.valid_webhook(topup_order.latest_payment()))
        assert response.status_code == 200, response.get_data(as_text=True)
        assert "applied" in response.get_json()["outcomes"]
        assert Order.get_by_id(topup_order.id).status == orders.PAID
        assert worker.deliver_once(topup_app)
        assert Order.get_by_id(topup_order.id).status == orders.DELIVERED

    def test_the_event_is_the_order_total_in_minor_units(self, topup_order):
        payment = topup_order.latest_payment()
        events = self.parse(*self.valid_webhook(payment))
        assert all(isinstance(event, PaymentEvent) for event in events)
        paid = [event for event in events if event.kind == "succeeded"]
        assert len(paid) == 1, events
        assert paid[0].payment_ref == payment.provider_ref
        assert EXTERNAL_ID.fullmatch(paid[0].event_id)
        assert paid[0].amount == Money(topup_order.amount, topup_order.currency), (
            "a succeeded event carries what was paid, as Money in the order's minor units")

    def test_a_duplicate_event_changes_nothing(self, topup_client, topup_order):
        payment = topup_order.latest_payment()
        events = self.parse(*self.valid_webhook(payment))
        assert "applied" in [orders.apply_payment_event(self.provider_class.id, e) for e in events]
        again = [orders.apply_payment_event(self.provider_class.id, e) for e in events]
        assert again == ["duplicate"] * len(events)
        retry = self.post(topup_client, *self.valid_webhook(payment))  # the provider retries
        assert retry.status_code == 200, retry.get_data(as_text=True)
        assert set(retry.get_json()["outcomes"]) <= {"duplicate", "ignored"}
        assert Order.get_by_id(topup_order.id).status == orders.PAID
        assert Delivery.select().where(Delivery.order == topup_order.id).count() == 1

    def test_a_forged_webhook_changes_nothing(self, topup_client, topup_order):
        payment = topup_order.latest_payment()
        forgeries = self.forged_webhooks(payment)
        assert forgeries
        for body, headers in forgeries:
            with pytest.raises(WebhookRejected):
                self.parse(body, headers)
            assert self.post(topup_client, body, headers).status_code == 400
        assert Order.get_by_id(topup_order.id).status == orders.AWAITING_PAYMENT
        assert Payment.get_by_id(payment.id).status == "started"
        assert WebhookEvent.select().count() == 0

    def test_a_tampered_body_is_rejected_or_not_trusted(self, topup_order):
        body, headers = self.valid_webhook(topup_order.latest_payment())
        tampered = self.tamper(body)
        assert tampered != body
        genuine = self.parse(body, headers)
        try:
            events = self.parse(tampered, headers)
        except WebhookRejected:
            return
        assert events == genuine, "a tampered body was believed"

    def test_refunds_behave_as_supports_refund_says(self, topup_client, topup_order):
        payment = topup_order.latest_payment()
        assert self.post(topup_client, *self.valid_webhook(payment)).status_code == 200
        payment = Payment.get_by_id(payment.id)
        assert payment.status == "succeeded"
        if not self.provider_class.supports_refund:
            with pytest.raises(NotImplementedError):
                current_app.extensions["topup"].providers[payment.provider].refund(payment)
            return
        refunded = orders.refund(Order.get_by_id(topup_order.id), "contract", "contract test")
        assert refunded.status == orders.REFUNDED

    def test_fetch_status_of_an_unpaid_payment(self, topup_provider, topup_order):
        payment = topup_order.latest_payment()
        answer = topup_provider.fetch_status(payment)
        assert answer is None or isinstance(answer, PaymentEvent)
        if answer is not None:
            assert answer.payment_ref == payment.provider_ref
            assert answer.kind != "succeeded", "nobody paid, yet fetch_status says succeeded"
