"""Events in any order: a Hypothesis state machine drives orders through every
way the world can talk to them — provider events (any kind, repeated, under
new ids, with the wrong amount or currency), a missed webhook healed by the
reconciler, the payment window running out, the worker with a backend that
answers anything (delivered, pending, retry, failed, an exception, or an
exception after it credited the account), a worker that dies mid-delivery,
and every operator action — and checks after each step that:

- every status change in an order's timeline is one of orders.TRANSITIONS,
  the timeline is unbroken and ends at the order's status;
- an order has at most one Delivery row and at most one credit in the
  backend's ledger; the backend is only ever asked to deliver an order that
  is being delivered, and never again once its delivered answer is recorded;
- no order is paid, credited or delivered by the system without a provider
  event of the right amount and currency or an operator's "mark paid";
- delivered means a payment succeeded;
- the admin page offers exactly the operator actions topup.orders accepts;

and at the end, with the worker run until nothing is due, that every paid
order is delivered, needs attention, or was refunded: nothing is left hanging.
"""
from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle, RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test,
)

from topup import orders, reconcile, worker
from topup.delivery import DeliveryResult
from topup.models import (Delivery, Order, OrderEvent, Package, Payment, Product, PromoCode,
                          PromoUse, utcnow)
from topup.web.admin.allowed import available
from topup_plugins.sandbox.delivery import SandboxCredit
from topup_plugins.sandbox.payment import SandboxCheckout

from tests.conftest import signed_headers

OPERATOR = "ops@example.com"
EVENT_KINDS = ("succeeded", "failed", "expired", "pending", "refunded")
ANSWERS = ("delivered", "pending", "retry", "failed", "raise", "credit_then_raise")
ACTIONS = ("mark-paid", "retry", "delivered", "failed", "cancel", "refund")
CHOICES = [("US", "USD", 70), ("ID", "IDR", 30), ("BR", "BRL", 350), ("VN", "VND", 70)]
OPEN_DELIVERY = ("pending", "working", "waiting")
PROMO = "MACHINE"  # 10% off, no limits: some orders carry it

MACHINE_SETTINGS = settings(
    max_examples=30, stateful_step_count=25, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture
def config(config):
    config.update(DELIVERY_RETRY_BASE_SECONDS=0, DELIVERY_CHECK_MIN_SECONDS=0,
                  RECONCILE_PAYMENTS_EVERY_SECONDS=0)
    return config


class ScriptedBackend:
    """The sandbox ledger behind a backend whose next answer the machine chooses.

    Crediting goes through the real sandbox backend (idempotent on the order's
    public id, as every backend must be), so the ledger is the truth about
    what the buyer received. Every call is checked against what the core
    promises: asked only about an order that is being delivered, through a
    Delivery row this worker holds."""

    def __init__(self, real):
        self.real = real
        self.answer = "delivered"
        self.problems: list[str] = []
        self.delivered_calls = Counter()  # order id -> deliver() calls

    def _check(self, order_id: int, expected_row: str, call: str) -> None:
        order = Order.get_by_id(order_id)
        row = Delivery.get(Delivery.order == order_id)
        if order.status != orders.DELIVERING:
            self.problems.append(f"{call} for order {order_id} while it is {order.status}")
        if row.status != expected_row:
            self.problems.append(f"{call} for order {order_id} with its delivery {row.status}")

    def deliver(self, order) -> DeliveryResult:
        self._check(order.id, "working", "deliver()")
        self.delivered_calls[order.id] += 1
        answer = self.answer
        if answer == "raise":
            raise TimeoutError("the reseller did not answer")
        if answer == "retry":
            return DeliveryResult("retry", message="reseller busy")
        if answer == "failed":
            return DeliveryResult("failed", message="account cannot receive coins")
        if answer == "pending":
            return DeliveryResult("pending", reference=f"ACC-{order.id}")
        result = self.real.deliver(order)  # credits the ledger, once per order
        if answer == "credit_then_raise":
            raise TimeoutError("credited, but the answer was lost")
        return result

    def fetch_status(self, delivery) -> DeliveryResult | None:
        self._check(delivery.order_id, "waiting", "fetch_status()")
        answer = self.answer
        if answer in ("raise", "credit_then_raise"):
            if answer == "credit_then_raise":
                self.real.deliver(delivery.order)
            raise TimeoutError("status check timed out")
        if answer == "pending":
            return None
        if answer == "retry":
            return DeliveryResult("retry", message="reseller lost it")
        if answer == "failed":
            return DeliveryResult("failed", message="reseller gave up")
        return self.real.deliver(delivery.order)


class OrderLives(RuleBasedStateMachine):
    placed = Bundle("orders")

    def __init__(self, app, client, backend: ScriptedBackend):
        super().__init__()
        self.app, self.client, self.backend = app, client, backend
        self.mine: list[int] = []
        self.money_ok: set[int] = set()  # a right-amount success was told, or marked paid
        self.delivered_recorded: dict[int, int] = {}  # order id -> deliver() calls by then

    # --- the buyer ---------------------------------------------------------------

    def core(self):
        """A context for calling topup directly (the test client's requests get their own)."""
        return self.app.test_request_context()

    def _place(self, choice, promo: bool) -> int:
        country, currency, coins = choice
        product = Product.get(Product.slug == "tiktok-coins")
        package = Package.get(Package.product == product, Package.quantity == coins)
        with self.core():
            order, created = orders.create_order(
                product=product, package=package, country=country, currency=currency,
                account_id="machine_user", account_nickname=None, payment_method="sandbox",
                email=None, locale="en", idempotency_key=secrets.token_urlsafe(18),
                promo_code=PROMO if promo else None)
            assert created
            provider = self.app.extensions["topup"].providers["sandbox"]
            orders.start_payment(order, provider, return_url="http://127.0.0.1/return")
        self.mine.append(order.id)
        return order.id

    @initialize(target=placed, choice=st.sampled_from(CHOICES), promo=st.booleans())
    def first_order(self, choice, promo):
        PromoCode.get_or_create(code=PROMO, defaults={"kind": "percent", "percent_bp": 1000})
        return self._place(choice, promo)

    @rule(target=placed, choice=st.sampled_from(CHOICES), promo=st.booleans())
    def place(self, choice, promo):
        return self._place(choice, promo)

    # --- the payment provider ---------------------------------------------------------

    @rule(order_id=placed, kind=st.sampled_from(EVENT_KINDS), copy=st.integers(0, 2),
          amount=st.sampled_from(["right", "right", "right", "short", "currency", "absent"]))
    def provider_event(self, order_id, kind, copy, amount):
        """A signed webhook: event ids repeat (copy), and a success may carry
        the wrong amount or currency, or none (a provider that does not say)."""
        payment = Payment.get(Payment.order == order_id)
        data = {"payment_id": payment.provider_ref, "amount": payment.amount,
                "currency": payment.currency}
        if kind == "succeeded" and amount == "short":
            data["amount"] = payment.amount - 1
        elif kind == "succeeded" and amount == "currency":
            data["currency"] = "EUR" if payment.currency != "EUR" else "USD"
        body = json.dumps({"id": f"evt_{payment.provider_ref}_{kind}_{copy}",
                           "type": f"payment.{kind}", "created": int(time.time()),
                           "data": data}).encode()
        response = self.client.post("/webhooks/sandbox", data=body, headers=signed_headers(body))
        assert response.status_code == 200, response.get_data(as_text=True)
        if kind == "succeeded" and amount in ("right", "absent"):
            self.money_ok.add(order_id)

    @rule(order_id=placed, approved=st.booleans())
    def webhook_lost_then_reconciled(self, order_id, approved):
        """The buyer decided at the provider, its webhook never came: the
        reconciler asks (fetch_status) and applies the answer."""
        payment = Payment.get(Payment.order == order_id)
        changed = (SandboxCheckout.update(status="approved" if approved else "declined")
                   .where(SandboxCheckout.ref == payment.provider_ref,
                          SandboxCheckout.status == "open").execute())
        if changed and approved:
            self.money_ok.add(order_id)
        with self.core():
            reconcile.payments()

    @rule(order_id=placed)
    def payment_window_ends(self, order_id):
        Order.update(expires_at=utcnow() - timedelta(seconds=1)).where(
            Order.id == order_id).execute()
        with self.core():
            orders.expire_overdue()

    # --- the worker ----------------------------------------------------------------------

    @rule(answer=st.sampled_from(ANSWERS))
    def worker_delivers(self, answer):
        self.backend.answer = answer
        worker.deliver_once(self.app)
        self._note_recorded_deliveries()

    @rule(answer=st.sampled_from(ANSWERS))
    def worker_dies_mid_delivery(self, answer):
        """Claimed, the backend asked (and perhaps credited), then the process
        died before recording anything; later the lease runs out."""
        self.backend.answer = answer
        with self.app.app_context():
            delivery = orders.claim_delivery()
            if delivery is None:
                return
            try:
                if delivery.status == "waiting":
                    self.backend.fetch_status(delivery)
                else:
                    self.backend.deliver(delivery.order)
            except TimeoutError:
                pass
        Delivery.update(lease_until=utcnow() - timedelta(seconds=1)).where(
            Delivery.id == delivery.id).execute()

    @rule()
    def time_passes_for_the_outbox(self):
        """Backoffs and status checks fall due."""
        Delivery.update(next_attempt_at=utcnow() - timedelta(seconds=1)).where(
            Delivery.status.in_(("pending", "waiting"))).execute()

    def _note_recorded_deliveries(self):
        for row in Delivery.select().where(Delivery.status == "done",
                                           Delivery.order.in_(self.mine)):
            self.delivered_recorded.setdefault(row.order_id,
                                               self.backend.delivered_calls[row.order_id])

    # --- the operator ---------------------------------------------------------------------

    @rule(order_id=placed, action=st.sampled_from(ACTIONS))
    def operator(self, order_id, action):
        order = Order.get_by_id(order_id)
        offered = action in available(order, list(order.payments), order.deliveries.first())
        with self.core():
            self._act(order, order_id, action, offered)

    def _act(self, order, order_id, action, offered):
        try:
            if action == "mark-paid":
                orders.mark_paid(order, "BANK-REF-1", OPERATOR)
                self.money_ok.add(order_id)
            elif action == "retry":
                orders.retry_delivery(order, OPERATOR)
            elif action == "delivered":
                orders.mark_delivered(order, "HAND-1", OPERATOR)
            elif action == "failed":
                orders.mark_delivery_failed(order, "the reseller is down", OPERATOR)
            elif action == "cancel":
                orders.cancel(order, "buyer asked", OPERATOR)
            else:
                orders.refund(order, OPERATOR, "buyer asked")
        except orders.OrderRefused as refused:
            assert not offered, f"the admin offers {action} on a {order.status} order, " \
                                f"but topup.orders refuses it: {refused}"
        else:
            assert offered, f"the admin hides {action} on a {order.status} order, " \
                            "but topup.orders accepts it"

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def timelines_follow_the_transition_table(self):
        for order_id in self.mine:
            trail = [(e.from_status, e.to_status) for e in OrderEvent.select().where(
                OrderEvent.order == order_id, OrderEvent.kind == "status").order_by(OrderEvent.id)]
            assert trail[0] == (None, orders.AWAITING_PAYMENT), trail
            for (_, previous), (old, new) in zip(trail, trail[1:]):
                assert old == previous, f"order {order_id}: broken timeline {trail}"
                assert new in orders.TRANSITIONS[old], f"order {order_id}: {old} -> {new}"
            assert trail[-1][1] == Order.get_by_id(order_id).status, trail

    @invariant()
    def one_delivery_one_credit_and_only_for_money(self):
        assert self.backend.problems == []
        for order_id in self.mine:
            order = Order.get_by_id(order_id)
            deliveries = Delivery.select().where(Delivery.order == order_id).count()
            credits = SandboxCredit.select().where(SandboxCredit.order_ref == order.public_id,
                                                   SandboxCredit.credited_at.is_null(False)).count()
            assert deliveries <= 1 and credits <= 1
            reached = {e.to_status: e.actor for e in OrderEvent.select().where(
                OrderEvent.order == order_id, OrderEvent.kind == "status")}
            if orders.PAID in reached or deliveries or credits:
                assert order_id in self.money_ok, \
                    f"order {order_id} paid, queued or credited without money: {reached}"
            if orders.DELIVERED in reached:
                assert order.latest_payment().status in ("succeeded", "refunded")
                if reached[orders.DELIVERED] == "system":  # the backend said so: it credited
                    assert credits == 1
            if order_id in self.delivered_recorded:  # never asked again once recorded
                assert self.backend.delivered_calls[order_id] == self.delivered_recorded[order_id]

    @invariant()
    def a_promo_use_is_held_unless_the_order_ended_unpaid(self):
        code = PromoCode.get_or_none(PromoCode.code == PROMO)
        if code is None:
            return
        assert code.uses == PromoUse.select().where(PromoUse.promo == code.id).count()
        for order_id in self.mine:
            order = Order.get_by_id(order_id)
            if order.promo_code != PROMO:
                continue
            reached = {e.to_status for e in OrderEvent.select().where(
                OrderEvent.order == order_id, OrderEvent.kind == "status")}
            ended_unpaid = (order.status in orders.UNPAID_ENDS
                            and not reached & {orders.PAID, orders.NEEDS_ATTENTION})
            held = PromoUse.select().where(PromoUse.order == order_id).exists()
            assert held != ended_unpaid, (order.status, reached, held)

    def teardown(self):
        """Run the worker until nothing is due, with a backend that works: an
        order still paid or being delivered must end delivered."""
        in_flight = {order_id for order_id, in Order.select(Order.id).where(
            Order.id.in_(self.mine), Order.status.in_((orders.PAID, orders.DELIVERING))).tuples()}
        self.backend.answer = "delivered"
        for _ in range(200):
            Delivery.update(next_attempt_at=utcnow() - timedelta(seconds=1),
                            ).where(Delivery.status.in_(("pending", "waiting"))).execute()
            Delivery.update(lease_until=utcnow() - timedelta(seconds=1)).where(
                Delivery.status.in_(OPEN_DELIVERY), Delivery.lease_until.is_null(False)).execute()
            if not worker.deliver_once(self.app):
                break
        assert self.backend.problems == []
        for order_id in self.mine:
            order = Order.get_by_id(order_id)
            row = Delivery.get_or_none(Delivery.order == order_id)
            assert row is None or row.status not in OPEN_DELIVERY, (order.status, row.status)
            was_paid = OrderEvent.select().where(OrderEvent.order == order_id,
                                                 OrderEvent.to_status == orders.PAID).exists()
            if order_id in in_flight:
                assert order.status == orders.DELIVERED, order.status
            if was_paid:
                assert order.status in (orders.DELIVERED, orders.NEEDS_ATTENTION,
                                        orders.REFUNDED), order.status
            if order.status == orders.DELIVERED and row is not None and row.reference \
                    and row.reference.startswith("SBX-"):
                credit = SandboxCredit.get(SandboxCredit.order_ref == order.public_id)
                assert credit.reference == row.reference


def test_any_sequence_of_events_and_actions_loses_and_doubles_nothing(app, client, monkeypatch):
    registry = app.extensions["topup"]
    backend = ScriptedBackend(registry.backends["sandbox"])
    monkeypatch.setitem(registry.backends, "sandbox", backend)
    backend.id = "sandbox"
    run_state_machine_as_test(lambda: OrderLives(app, client, backend),
                              settings=MACHINE_SETTINGS)
