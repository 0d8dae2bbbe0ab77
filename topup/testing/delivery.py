"""DeliveryBackendContract: what the shop relies on from every delivery backend.

    class TestMyResellerContract(DeliveryBackendContract):
        backend_class = MyReseller
        settings = {"api_key": "test", "base_url": FAKE_URL}

        def credits(self, order):
            return fake_reseller.topups_for(order.public_id)
"""
from __future__ import annotations

import time

import pytest

from topup import orders, worker
from topup.delivery import DELIVERY_STATUSES, AccountInfo, DeliveryBackend, DeliveryResult
from topup.models import Delivery, Order
from topup.testing import shop


class DeliveryBackendSetup(shop.PluginSetup):
    """The kit's shop, set up for one backend, without the contract's tests:
    a base for an author's own tests. Set the attributes, write credits()."""

    backend_class: type[DeliveryBackend] = None
    _registered, _hook = "backend_class", "register_delivery_backends"
    account_id: str = shop.ACCOUNT_ID  # an account the backend finds (well-formed TikTok id)
    lookup_budget_seconds = 2.0  # the buyer waits for this while typing

    # --- what the author writes ------------------------------------------------------

    def credits(self, order: Order) -> int:
        """How many times the account was really credited for `order`, as your
        side (a fake reseller, your ledger) counts it."""
        raise NotImplementedError(f"{type(self).__name__} must define credits(order)")

    def prepare(self, order: Order) -> None:
        """Make `order` deliverable (e.g. put a voucher code in stock). Default: nothing."""

    # --- wiring ----------------------------------------------------------------------

    @pytest.fixture
    def topup_delivery_backend(self):
        return self.backend_class.id

    @pytest.fixture
    def topup_account(self):
        return self.account_id

    @pytest.fixture
    def topup_paid_order(self, topup_place_order):
        """A factory: an order paid with the sandbox, its delivery due, prepared."""
        def pay() -> Order:
            order = topup_place_order()
            assert shop.pay_with_sandbox(order) == "applied"
            order = Order.get_by_id(order.id)
            self.prepare(order)
            return order
        return pay


class DeliveryBackendContract(DeliveryBackendSetup):
    """Subclass as Test<Something>: every test below runs against your backend."""

    def test_builds_from_its_settings(self, topup_app):
        registry = topup_app.extensions["topup"]
        bid = self.backend_class.id
        assert bid not in registry.not_configured, "__init__ raised NotConfigured with `settings`"
        assert not registry.errors, registry.errors
        assert isinstance(registry.backends.get(bid), self.backend_class)
        assert isinstance(self.backend_class.name, str) and self.backend_class.name

    def test_lookup_answers_within_the_budget(self, topup_backend, topup_product):
        started = time.monotonic()
        info = topup_backend.lookup_account(topup_product, self.account_id)
        elapsed = time.monotonic() - started
        assert isinstance(info, AccountInfo)
        assert info.account_id == self.account_id and isinstance(info.found, bool)
        assert info.found or info.reason, "say why an account is not found"
        assert elapsed <= self.lookup_budget_seconds, (
            f"lookup_account took {elapsed:.2f} s (budget {self.lookup_budget_seconds} s): "
            "use a short timeout on the network call")

    def test_deliver_is_idempotent_on_the_order(self, topup_backend, topup_paid_order):
        order = topup_paid_order()
        first = topup_backend.deliver(order)
        second = topup_backend.deliver(order)
        for result in (first, second):
            assert isinstance(result, DeliveryResult) and result.status in DELIVERY_STATUSES
            assert result.reference is None or (isinstance(result.reference, str)
                                                and 0 < len(result.reference) <= 255)
        if first.status == "delivered":
            assert (second.status, second.reference) == ("delivered", first.reference)
        if first.status == "pending":
            assert second.status in ("pending", "delivered"), second
        credited = self.credits(order)
        assert credited <= 1, f"one order credited {credited} times"
        if "delivered" in (first.status, second.status):
            assert credited == 1

    def test_each_order_is_credited_on_its_own(self, topup_backend, topup_paid_order):
        one, two = topup_paid_order(), topup_paid_order()
        first, second = topup_backend.deliver(one), topup_backend.deliver(two)
        assert first.status == second.status, (first, second)
        if first.status == "delivered":
            assert (self.credits(one), self.credits(two)) == (1, 1)
            if first.reference is not None:
                assert first.reference != second.reference

    def test_fetch_status_answers_none_or_a_result(self, topup_backend, topup_paid_order):
        order = topup_paid_order()
        topup_backend.deliver(order)
        answer = topup_backend.fetch_status(Delivery.get(Delivery.order == order.id))
        assert answer is None or (isinstance(answer, DeliveryResult)
                                  and answer.status in DELIVERY_STATUSES)

    def test_stock_and_buyer_code(self, topup_backend, topup_paid_order):
        order = topup_paid_order()
        assert topup_backend.in_stock(order.package) is True, "prepared, yet not in stock"
        topup_backend.deliver(order)
        code = topup_backend.buyer_code(order)
        assert code is None or (isinstance(code, str) and code)

    def test_the_worker_delivers_a_paid_order(self, topup_app, topup_paid_order):
        order = topup_paid_order()
        assert worker.deliver_once(topup_app)
        order = Order.get_by_id(order.id)
        assert order.status in (orders.DELIVERED, orders.DELIVERING), order.status
        delivery = Delivery.get(Delivery.order == order.id)
        assert delivery.status in ("done", "waiting"), (delivery.status, delivery.last_error)
