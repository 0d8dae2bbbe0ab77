"""The order state machine (topup.orders): every status change, its audit trail,
the compare-and-set, the after-commit hook and the delivery outbox bookkeeping."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from topup import hookimpl, orders
from topup.db import database
from topup.delivery import DeliveryResult
from topup.models import (
    Delivery, Order, OrderEvent, Package, Payment, Price, Product, WebhookEvent, utcnow,
)
from topup.money import Money
from topup.payments import PaymentEvent
from topup_plugins.sandbox.delivery import SandboxCredit

from tests.conftest import place_order, plugin_problems

# --- helpers -------------------------------------------------------------------


def new_order(key: str = "k" * 24, *, coins: int = 70, currency: str = "USD", **overrides):
    """create_order with the demo product; must run inside an app context."""
    product = Product.get(Product.slug == "tiktok-coins")
    package = Package.get(Package.product == product, Package.quantity == coins)
    choices = dict(product=product, package=package, country="US", currency=currency,
                   account_id="demo_user", account_nickname="Demo User",
                   payment_method="sandbox", email=None, locale="en", idempotency_key=key)
    choices.update(overrides)
    return orders.create_order(**choices)


def fresh(order: Order) -> Order:
    return Order.get_by_id(order.id)


def payment_of(order: Order) -> Payment:
    return Payment.get(Payment.order == order.id)


def event(order: Order, kind: str = "succeeded", *, event_id: str | None = None,
          amount: int | None = None, currency: str | None = None, with_amount: bool = True,
          ) -> PaymentEvent:
    payment = payment_of(order)
    money = None
    if with_amount:
        money = Money(payment.amount if amount is None else amount, currency or payment.currency)
    return PaymentEvent(event_id=event_id or f"evt_{payment.provider_ref}_{kind}", kind=kind,
                        payment_ref=payment.provider_ref, amount=money)


def apply(app, order: Order, kind: str = "succeeded", **kwargs) -> str:
    with app.app_context():
        return orders.apply_payment_event("sandbox", event(order, kind, **kwargs))


def status_trail(order: Order) -> list[tuple]:
    """The (from, to) of every status OrderEvent, oldest first."""
    return [(e.from_status, e.to_status) for e in
            OrderEvent.select().where(OrderEvent.order == order.id, OrderEvent.kind == "status")
            .order_by(OrderEvent.id)]


def deliveries(order: Order) -> list[Delivery]:
    return list(Delivery.select().where(Delivery.order == order.id))


def snapshot(order: Order) -> tuple:
    """Everything a payment event may change, for "nothing changed" assertions."""
    o, p = fresh(order), payment_of(order)
    return (o.status, p.status, len(deliveries(order)),
            OrderEvent.select().where(OrderEvent.order == order.id).count())


@pytest.fixture
def order(app, client):
    """An order placed through the shop: awaiting payment, sandbox checkout started."""
    with app.app_context():
        placed = place_order(client)
    assert placed.status == orders.AWAITING_PAYMENT
    assert payment_of(placed).status == "started" and payment_of(placed).provider_ref
    return placed


@pytest.fixture
def paid(app, order):
    assert apply(app, order) == "applied"
    assert fresh(order).status == orders.PAID
    return order


class Recorder:
    """A plugin that remembers every order_status_changed call and what it could see."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def order_status_changed(self, order, old, new):
        self.calls.append({"order": order.public_id, "old": old, "new": new,
                           "in_transaction": database.in_transaction(),
                           "stored_status": Order.get_by_id(order.id).status})

    def transitions(self):
        return [(call["old"], call["new"]) for call in self.calls]


class Broken:
    @hookimpl
    def order_status_changed(self, order, old, new):
        raise RuntimeError("notifier is down")


@pytest.fixture
def recorder(app):
    plugin = Recorder()
    app.extensions["topup"].pm.register(plugin, name="test_recorder")
    return plugin


# --- the transition table --------------------------------------------------------


def test_transition_table_is_closed_and_final_states_are_dead_ends():
    statuses = set(orders.TRANSITIONS)
    for old, targets in orders.TRANSITIONS.items():
        assert targets <= statuses, old
        assert old not in targets, f"{old} -> {old} would be a silent no-op"
    assert orders.TRANSITIONS[orders.REFUNDED] == set()
    for closed in (orders.CANCELED, orders.EXPIRED, orders.FAILED):  # only money arriving reopens
        assert orders.TRANSITIONS[closed] == {orders.NEEDS_ATTENTION}
    assert orders.FINAL <= statuses
    assert orders.PAID not in orders.FINAL and orders.NEEDS_ATTENTION not in orders.FINAL


# --- create_order ----------------------------------------------------------------


def test_create_order_prices_from_the_price_table_and_records_the_first_event(app):
    with app.app_context():
        order, created = new_order(coins=350, currency="BRL")
        package = Package.get(Package.quantity == 350)
        price = Price.get(Price.package == package, Price.currency == "BRL")
        assert created is True
        assert (order.amount, order.currency, order.quantity) == (price.amount, "BRL", 350)
        payment = payment_of(order)
        assert (payment.amount, payment.currency, payment.status) == (price.amount, "BRL",
                                                                       "created")
        assert payment.provider == "sandbox" and payment.provider_ref is None
        assert fresh(order).status == orders.AWAITING_PAYMENT
        assert fresh(order).expires_at > utcnow()
        assert status_trail(order) == [(None, orders.AWAITING_PAYMENT)]
        assert OrderEvent.get(OrderEvent.order == order.id).actor == "buyer"
        assert deliveries(order) == []


def test_create_order_uses_the_current_price_not_anything_the_buyer_sent(app):
    with app.app_context():
        package = Package.get(Package.quantity == 70)
        Price.update(amount=12345).where(Price.package == package,
                                         Price.currency == "USD").execute()
        order, _ = new_order("a" * 24)
        assert fresh(order).amount == 12345 and payment_of(order).amount == 12345
        # create_order has no amount parameter at all: the price cannot come from input.
        with pytest.raises(TypeError):
            new_order("b" * 24, amount=1)


def test_create_order_same_key_same_choices_returns_the_same_order(app):
    with app.app_context():
        first, created_first = new_order("same-key-" + "x" * 16)
        second, created_second = new_order("same-key-" + "x" * 16)
        # "" and None are the same "no e-mail"
        third, created_third = new_order("same-key-" + "x" * 16, email="")
        assert (created_first, created_second, created_third) == (True, False, False)
        assert first.id == second.id == third.id
        assert Order.select().count() == 1
        assert Payment.select().count() == 1
        assert OrderEvent.select().count() == 1


@pytest.mark.parametrize("change", [
    {"coins": 350}, {"currency": "BRL"}, {"country": "BR"}, {"account_id": "somebody_else"},
    {"email": "buyer@example.com"}, {"payment_method": "other"},
])
def test_create_order_same_key_other_choices_is_refused(app, change):
    with app.app_context():
        first, _ = new_order("reused-key-" + "y" * 16)
        with pytest.raises(orders.OrderRefused, match="already used"):
            new_order("reused-key-" + "y" * 16, **change)
        assert [o.id for o in Order.select()] == [first.id]
        assert Payment.select().count() == 1


def test_create_order_refuses_unpriced_disabled_or_foreign_packages(app):
    with app.app_context():
        with pytest.raises(orders.OrderRefused, match="not sold"):
            new_order("c" * 24, currency="JPY")  # no JPY prices
        package = Package.get(Package.quantity == 70)
        Package.update(enabled=False).where(Package.id == package.id).execute()
        with pytest.raises(orders.OrderRefused, match="not sold"):
            new_order("d" * 24)
        other = Product.create(slug="other", name="Other", delivery_backend="sandbox")
        with pytest.raises(orders.OrderRefused, match="not sold"):
            new_order("e" * 24, coins=350, product=other)
        assert Order.select().count() == 0 and Payment.select().count() == 0


# --- apply_payment_event -----------------------------------------------------------


def test_success_pays_and_queues_exactly_one_delivery(app, order):
    assert apply(app, order) == "applied"
    assert fresh(order).status == orders.PAID
    assert payment_of(order).status == "succeeded"
    [delivery] = deliveries(order)
    assert (delivery.status, delivery.attempts, delivery.backend) == ("pending", 0, "sandbox")
    assert delivery.next_attempt_at <= utcnow() and delivery.lease_until is None
    assert status_trail(order) == [(None, orders.AWAITING_PAYMENT),
                                   (orders.AWAITING_PAYMENT, orders.PAID)]
    webhook = WebhookEvent.get()
    assert (webhook.provider, webhook.order_id, webhook.outcome) == ("sandbox", order.id,
                                                                      "applied")


def test_replay_of_the_same_event_id_is_a_duplicate_and_changes_nothing(app, paid):
    before = snapshot(paid)
    for _ in range(3):
        assert apply(app, paid) == "duplicate"
    assert snapshot(paid) == before
    assert WebhookEvent.select().count() == 1


def test_second_success_under_another_event_id_queues_no_second_delivery(app, paid):
    before = snapshot(paid)
    assert apply(app, paid, event_id="evt_other_id") == "ignored"
    assert snapshot(paid) == before
    assert len(deliveries(paid)) == 1
    assert WebhookEvent.get(WebhookEvent.event_id == "evt_other_id").outcome == "ignored"


@pytest.mark.parametrize("mismatch", [{"amount": 1}, {"currency": "EUR"}])
def test_amount_or_currency_mismatch_needs_attention_and_delivers_nothing(app, order, mismatch):
    assert apply(app, order, **mismatch) == "applied"
    assert fresh(order).status == orders.NEEDS_ATTENTION
    assert deliveries(order) == []
    last = OrderEvent.select().where(OrderEvent.order == order.id).order_by(
        OrderEvent.id.desc()).first()
    assert (last.from_status, last.to_status) == (orders.AWAITING_PAYMENT,
                                                  orders.NEEDS_ATTENTION)
    expected = payment_of(order)
    assert f"expected {expected.amount} {expected.currency}" in last.message


def test_success_without_an_amount_is_trusted(app, order):
    assert apply(app, order, with_amount=False) == "applied"
    assert fresh(order).status == orders.PAID and len(deliveries(order)) == 1


@pytest.mark.parametrize("kind,status", [("failed", orders.FAILED),
                                         ("expired", orders.EXPIRED)])
def test_failure_and_expiry_close_the_order(app, order, kind, status):
    assert apply(app, order, kind) == "applied"
    assert fresh(order).status == status
    assert payment_of(order).status == kind
    assert deliveries(order) == []
    assert status_trail(order)[-1] == (orders.AWAITING_PAYMENT, status)


def test_failure_after_success_is_ignored(app, paid):
    before = snapshot(paid)
    assert apply(app, paid, "failed") == "ignored"
    assert apply(app, paid, "expired") == "ignored"
    assert snapshot(paid) == before
    assert fresh(paid).status == orders.PAID and payment_of(paid).status == "succeeded"


def test_pending_marks_the_payment_only(app, order):
    assert apply(app, order, "pending") == "applied"
    assert payment_of(order).status == "pending"
    assert fresh(order).status == orders.AWAITING_PAYMENT
    assert status_trail(order) == [(None, orders.AWAITING_PAYMENT)]
    assert apply(app, order) == "applied"  # and the success still pays
    assert fresh(order).status == orders.PAID


def test_success_after_the_order_failed_needs_attention(app, order):
    apply(app, order, "failed")
    assert apply(app, order) == "applied"
    assert fresh(order).status == orders.NEEDS_ATTENTION
    assert payment_of(order).status == "succeeded"
    assert deliveries(order) == []
    assert status_trail(order)[-1] == (orders.FAILED, orders.NEEDS_ATTENTION)


def test_expire_overdue_closes_only_overdue_unpaid_orders(app, client):
    with app.app_context():
        overdue = place_order(client)
        recent = place_order(client)
        done = place_order(client)
    apply(app, done)
    Order.update(expires_at=utcnow() - timedelta(seconds=1)).where(
        Order.id.in_([overdue.id, done.id])).execute()
    with app.app_context():
        assert orders.expire_overdue() == 1
        assert orders.expire_overdue() == 0
    assert fresh(overdue).status == orders.EXPIRED
    assert payment_of(overdue).status == "expired"
    assert status_trail(overdue)[-1] == (orders.AWAITING_PAYMENT, orders.EXPIRED)
    assert fresh(recent).status == orders.AWAITING_PAYMENT
    assert fresh(done).status == orders.PAID


def test_success_after_the_order_expired_needs_attention(app, order):
    Order.update(expires_at=utcnow() - timedelta(seconds=1)).where(Order.id == order.id).execute()
    with app.app_context():
        assert orders.expire_overdue() == 1
    assert fresh(order).status == orders.EXPIRED
    assert apply(app, order) == "applied"
    assert fresh(order).status == orders.NEEDS_ATTENTION
    assert payment_of(order).status == "succeeded"
    assert deliveries(order) == []
    assert status_trail(order) == [(None, orders.AWAITING_PAYMENT),
                                   (orders.AWAITING_PAYMENT, orders.EXPIRED),
                                   (orders.EXPIRED, orders.NEEDS_ATTENTION)]
    assert "after the order was expired" in OrderEvent.select().order_by(
        OrderEvent.id.desc()).first().message


def test_refund_after_success_refunds(app, paid):
    assert apply(app, paid, "refunded") == "applied"
    assert fresh(paid).status == orders.REFUNDED
    assert payment_of(paid).status == "refunded"
    assert status_trail(paid)[-1] == (orders.PAID, orders.REFUNDED)
    # A success told again afterwards does not revive the order.
    assert apply(app, paid, event_id="evt_late_success") == "ignored"
    assert fresh(paid).status == orders.REFUNDED
    # And the queued delivery is dropped instead of crediting a refunded order.
    with app.app_context():
        assert orders.claim_delivery() is None
    assert deliveries(paid)[0].status == "canceled"
    assert SandboxCredit.select().count() == 0


def test_refund_before_any_success_is_ignored(app, order):
    before = snapshot(order)
    assert apply(app, order, "refunded") == "ignored"
    assert snapshot(order) == before


def test_unknown_payment_ref_is_reported_and_changes_no_order(app, order):
    before = snapshot(order)
    unknown = PaymentEvent(event_id="evt_nobody", kind="succeeded", payment_ref="sbx_nobody",
                           amount=Money(94, "USD"))
    with app.app_context():
        assert orders.apply_payment_event("sandbox", unknown) == "unknown payment"
        # The same ref under another provider is unknown too.
        other = PaymentEvent(event_id="evt_x", kind="succeeded",
                             payment_ref=payment_of(order).provider_ref)
        assert orders.apply_payment_event("otherpay", other) == "unknown payment"
    assert snapshot(order) == before


def test_an_event_that_arrived_before_its_payment_was_known_still_applies_later(app):
    """A provider may notify before start_payment has stored its provider_ref (or
    the shop re-fetches the status later under the same event id). Answering
    "unknown payment" must not burn the event id: once the payment is known, the
    same event has to pay the order."""
    with app.app_context():
        order, _ = new_order()
        early = PaymentEvent(event_id="evt_early", kind="succeeded", payment_ref="ref_early",
                             amount=Money(order.amount, order.currency))
        assert orders.apply_payment_event("sandbox", early) == "unknown payment"
        Payment.update(provider_ref="ref_early", status="started").where(
            Payment.order == order.id).execute()
        assert orders.apply_payment_event("sandbox", early) == "applied"
    assert fresh(order).status == orders.PAID
    assert len(deliveries(order)) == 1


def test_mismatched_success_on_a_canceled_order_flags_it_for_a_person(app, order):
    """Money (even the wrong amount) arriving for a canceled order is recorded
    and flagged, never a ValueError from _transition (a webhook 500 retried forever)."""
    Order.update(status=orders.CANCELED).where(Order.id == order.id).execute()
    with app.app_context():
        outcome = orders.apply_payment_event("sandbox", event(order, amount=1))
    assert outcome == "applied"
    assert fresh(order).status == orders.NEEDS_ATTENTION
    assert WebhookEvent.select().count() == 1
    flagged = OrderEvent.get(OrderEvent.order == order.id,
                             OrderEvent.to_status == orders.NEEDS_ATTENTION)
    assert flagged.message.startswith("Paid 1 ")


def test_mismatched_success_on_a_refunded_order_is_noted_without_crashing(app, order):
    """REFUNDED has no way out: the event is noted on the timeline instead."""
    Order.update(status=orders.REFUNDED).where(Order.id == order.id).execute()
    Payment.update(status="started").execute()
    with app.app_context():
        outcome = orders.apply_payment_event("sandbox", event(order, amount=1))
    assert outcome == "applied"
    assert fresh(order).status == orders.REFUNDED
    assert OrderEvent.select().where(OrderEvent.order == order.id,
                                     OrderEvent.kind == "payment").count() == 1


def test_concurrent_successes_under_different_event_ids_pay_once(app, order):
    """A webhook and a status re-fetch racing: the order lock serialises them."""
    barrier = threading.Barrier(6)
    outcomes, errors = [], []

    def run(index):
        try:
            barrier.wait(10)
            outcomes.append(apply(app, order, event_id=f"evt_race_{index}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(outcomes) == ["applied"] + ["ignored"] * 5
    assert fresh(order).status == orders.PAID
    assert len(deliveries(order)) == 1
    assert status_trail(order).count((orders.AWAITING_PAYMENT, orders.PAID)) == 1
    assert WebhookEvent.select().count() == 6


def test_every_transition_of_a_full_life_is_in_the_timeline(app, paid):
    from topup.worker import deliver_once

    assert deliver_once(app) is True
    assert apply(app, paid, "refunded") == "applied"
    assert status_trail(paid) == [
        (None, orders.AWAITING_PAYMENT),
        (orders.AWAITING_PAYMENT, orders.PAID),
        (orders.PAID, orders.DELIVERING),
        (orders.DELIVERING, orders.DELIVERED),
        (orders.DELIVERED, orders.REFUNDED),
    ]


# --- _transition ---------------------------------------------------------------------


def test_transition_refuses_a_move_not_in_the_table(app, order):
    with app.app_context():
        with pytest.raises(ValueError, match="not a transition"):
            with database.atomic():
                orders._transition(orders._locked(order.id), orders.DELIVERED)
    assert fresh(order).status == orders.AWAITING_PAYMENT
    assert status_trail(order) == [(None, orders.AWAITING_PAYMENT)]


def test_transition_that_lost_the_compare_and_set_changes_and_writes_nothing(
        app, order, recorder):
    with app.app_context():
        stale = Order.get_by_id(order.id)  # read as awaiting_payment
        Order.update(status=orders.PAID).where(Order.id == order.id).execute()  # another writer
        with database.atomic():
            assert orders._transition(stale, orders.EXPIRED) is False
    assert stale.status == orders.AWAITING_PAYMENT  # the caller's copy is left alone too
    assert fresh(order).status == orders.PAID
    assert status_trail(order) == [(None, orders.AWAITING_PAYMENT)]
    assert recorder.calls == []


def test_transition_that_won_updates_the_copy_and_stamps_updated_at(app, order):
    before = fresh(order).updated_at
    with app.app_context():
        with database.atomic():
            locked = orders._locked(order.id)
            assert orders._transition(locked, orders.CANCELED, "buyer gave up",
                                      actor="admin:alice") is True
            assert locked.status == orders.CANCELED
    assert fresh(order).status == orders.CANCELED and fresh(order).updated_at >= before
    last = OrderEvent.select().order_by(OrderEvent.id.desc()).first()
    assert (last.kind, last.from_status, last.to_status, last.message, last.actor) == (
        "status", orders.AWAITING_PAYMENT, orders.CANCELED, "buyer gave up", "admin:alice")


# --- order_status_changed hook ---------------------------------------------------------


def test_hook_is_called_after_commit_with_old_and_new(app, order, recorder):
    with app.app_context():
        with database.atomic():
            assert orders.apply_payment_event("sandbox", event(order)) == "applied"
            assert recorder.calls == []  # not while the transaction is open
    assert recorder.transitions() == [(orders.AWAITING_PAYMENT, orders.PAID)]
    [call] = recorder.calls
    assert call["order"] == order.public_id
    assert call["in_transaction"] is False and call["stored_status"] == orders.PAID


def test_hook_follows_the_whole_delivery(app, paid, recorder):
    from topup.worker import deliver_once

    assert deliver_once(app) is True
    assert recorder.transitions() == [(orders.PAID, orders.DELIVERING),
                                      (orders.DELIVERING, orders.DELIVERED)]
    assert [c["stored_status"] for c in recorder.calls] == [orders.DELIVERING,
                                                            orders.DELIVERED]


def test_hook_is_not_called_when_the_transaction_rolls_back(app, order, recorder):
    with app.app_context():
        with pytest.raises(RuntimeError):
            with database.atomic():
                assert orders._transition(orders._locked(order.id), orders.EXPIRED) is True
                raise RuntimeError("something later in the transaction failed")
        # the next transaction on this connection does not inherit the callback either
        with database.atomic():
            Order.select().count()
    assert recorder.calls == []
    assert fresh(order).status == orders.AWAITING_PAYMENT
    assert status_trail(order) == [(None, orders.AWAITING_PAYMENT)]


def test_hook_that_raises_does_not_undo_the_transition(app, order, recorder):
    registry = app.extensions["topup"]
    registry.pm.register(Broken(), name="test_broken")
    assert apply(app, order) == "applied"
    assert fresh(order).status == orders.PAID
    assert len(deliveries(order)) == 1
    assert plugin_problems()["test_broken"] == "RuntimeError: notifier is down"
    assert recorder.transitions() == [(orders.AWAITING_PAYMENT, orders.PAID)]  # others still run


# --- claim_delivery / record_delivery_result ----------------------------------------------


def claim(app) -> Delivery | None:
    with app.app_context():
        return orders.claim_delivery()


def record(app, delivery, status, reference=None, message=None):
    with app.app_context():
        orders.record_delivery_result(delivery, DeliveryResult(status, reference, message))


def make_due(delivery) -> None:
    Delivery.update(next_attempt_at=utcnow() - timedelta(seconds=1)).where(
        Delivery.id == delivery.id).execute()


def expire_lease(delivery) -> None:
    Delivery.update(lease_until=utcnow() - timedelta(seconds=1)).where(
        Delivery.id == delivery.id).execute()


def test_claim_leases_the_delivery_and_marks_the_order_delivering(app, paid):
    before = utcnow()
    delivery = claim(app)
    assert delivery is not None and delivery.order_id == paid.id
    assert (delivery.status, delivery.attempts) == ("working", 1)
    lease = app.config["DELIVERY_LEASE_SECONDS"]
    assert before + timedelta(seconds=lease - 5) <= delivery.lease_until
    assert delivery.lease_until <= utcnow() + timedelta(seconds=lease)
    assert fresh(paid).status == orders.DELIVERING
    assert status_trail(paid)[-1] == (orders.PAID, orders.DELIVERING)
    # A leased delivery is nobody else's to take.
    assert claim(app) is None


def test_claim_with_nothing_due_returns_none(app, paid):
    Delivery.update(next_attempt_at=utcnow() + timedelta(minutes=5)).execute()
    assert claim(app) is None
    assert fresh(paid).status == orders.PAID
    assert deliveries(paid)[0].attempts == 0


def test_claim_takes_the_most_overdue_first(app, client):
    with app.app_context():
        first, second = place_order(client), place_order(client)
    apply(app, first)
    apply(app, second)
    Delivery.update(next_attempt_at=utcnow() - timedelta(minutes=1)).where(
        Delivery.order == second.id).execute()
    assert claim(app).order_id == second.id
    assert claim(app).order_id == first.id
    assert claim(app) is None


def test_delivered_result_delivers_the_order(app, paid):
    delivery = claim(app)
    record(app, delivery, "delivered", reference="R-1")
    current = Delivery.get_by_id(delivery.id)
    assert (current.status, current.reference, current.lease_until) == ("done", "R-1", None)
    assert fresh(paid).status == orders.DELIVERED
    assert status_trail(paid)[-1] == (orders.DELIVERING, orders.DELIVERED)
    attempt = OrderEvent.get(OrderEvent.order == paid.id, OrderEvent.kind == "delivery")
    assert "Attempt 1: delivered" in attempt.message and "R-1" in attempt.message
    assert claim(app) is None  # done is done


@pytest.fixture
def backoff_config(config):
    config["DELIVERY_RETRY_BASE_SECONDS"] = 10
    config["DELIVERY_RETRY_MAX_SECONDS"] = 60
    config["DELIVERY_MAX_ATTEMPTS"] = 10
    return config


def test_retry_backs_off_exponentially_up_to_the_cap(backoff_config, app, paid):
    expected_delays = [10, 20, 40, 60, 60]
    for attempt, delay in enumerate(expected_delays, 1):
        delivery = claim(app)
        assert delivery is not None and delivery.attempts == attempt
        before = utcnow()
        record(app, delivery, "retry", message=f"busy {attempt}")
        after = utcnow()
        current = Delivery.get_by_id(delivery.id)
        assert (current.status, current.attempts, current.lease_until) == ("pending", attempt,
                                                                           None)
        assert current.last_error == f"busy {attempt}"
        assert (before + timedelta(seconds=delay) <= current.next_attempt_at
                <= after + timedelta(seconds=delay)), (attempt, delay)
        assert claim(app) is None  # not due yet
        assert fresh(paid).status == orders.DELIVERING
        make_due(current)
    assert status_trail(paid)[-1] == (orders.PAID, orders.DELIVERING)  # no churn per retry


def test_pending_result_waits_and_is_checked_without_spending_attempts(backoff_config, app, paid):
    app.config["DELIVERY_CHECK_MIN_SECONDS"] = 30
    delivery = claim(app)
    record(app, delivery, "pending", reference="RS-9", message="accepted, processing")
    current = Delivery.get_by_id(delivery.id)
    assert (current.status, current.reference, current.lease_until) == ("waiting", "RS-9", None)
    assert utcnow() + timedelta(seconds=25) < current.next_attempt_at
    assert claim(app) is None  # not due yet
    assert fresh(paid).status == orders.DELIVERING
    for _ in range(3):  # checks with no news: no attempt spent, nothing in the timeline
        make_due(current)
        check = claim(app)
        assert (check.status, check.attempts) == ("waiting", 1) and check.lease_until
        events = OrderEvent.select().count()
        with app.app_context():
            orders.record_delivery_result(check, None)
        current = Delivery.get_by_id(delivery.id)
        assert (current.status, current.attempts, current.lease_until) == ("waiting", 1, None)
        assert OrderEvent.select().count() == events
    make_due(current)
    record(app, claim(app), "delivered", reference="RS-9")
    assert fresh(paid).status == orders.DELIVERED
    assert Delivery.get_by_id(delivery.id).status == "done"
    assert "Check: delivered" in OrderEvent.select().order_by(OrderEvent.id.desc()).offset(1).first().message


def test_a_check_answering_retry_delivers_again_as_an_attempt(app, paid):
    record(app, claim(app), "pending")
    make_due(Delivery.get(Delivery.order == paid.id))
    record(app, claim(app), "retry", message="reseller lost it")
    current = Delivery.get(Delivery.order == paid.id)
    assert (current.status, current.attempts) == ("pending", 1)
    make_due(current)
    again = claim(app)
    assert (again.status, again.attempts) == ("working", 2)


def test_a_backend_that_never_confirms_needs_attention_after_the_window(app, paid):
    record(app, claim(app), "pending")
    Delivery.update(created_at=utcnow() - timedelta(hours=25),
                    next_attempt_at=utcnow() - timedelta(seconds=1)).execute()
    with app.app_context():
        orders.record_delivery_result(claim(app), None)
    current = Delivery.get(Delivery.order == paid.id)
    assert current.status == "failed" and "did not confirm the delivery within 25 h" in current.last_error
    assert fresh(paid).status == orders.NEEDS_ATTENTION


def test_operator_marks_a_waiting_delivery_delivered_and_a_late_check_changes_nothing(app, paid):
    record(app, claim(app), "pending")
    make_due(Delivery.get(Delivery.order == paid.id))
    check = claim(app)  # a worker is asking the backend right now
    with app.app_context():
        orders.mark_delivered(fresh(paid), " TX-77 ", actor="ops@example.com", note="sent via app")
        orders.record_delivery_result(check, DeliveryResult("failed", message="late"))
    current = Delivery.get(Delivery.order == paid.id)
    assert (current.status, current.reference) == ("done", "TX-77")
    assert fresh(paid).status == orders.DELIVERED
    last = OrderEvent.select().order_by(OrderEvent.id.desc()).first()
    assert last.actor == "ops@example.com" and "TX-77: sent via app" in last.message


def test_operator_actions_refuse_what_they_cannot_do(app, client, paid):
    with app.app_context():
        unpaid = place_order(client)
        with pytest.raises(orders.OrderRefused, match="reference"):
            orders.mark_delivered(fresh(paid), "  ", actor="ops")
        with pytest.raises(orders.OrderRefused, match="awaiting payment cannot be marked delivered"):
            orders.mark_delivered(unpaid, "X", actor="ops")
        with pytest.raises(orders.OrderRefused, match="Only a paid order"):
            orders.retry_delivery(fresh(paid), actor="ops")  # nothing failed
    assert fresh(paid).status == orders.PAID and fresh(unpaid).status == orders.AWAITING_PAYMENT


def test_operator_fails_then_retries_a_delivery(app, paid):
    with app.app_context():
        orders.mark_delivery_failed(fresh(paid), "account suspended", actor="ops")
        assert fresh(paid).status == orders.NEEDS_ATTENTION
        assert claim(app) is None
        orders.retry_delivery(fresh(paid), actor="ops")
    current = Delivery.get(Delivery.order == paid.id)
    assert (current.status, current.attempts, current.last_error) == ("pending", 0, None)
    assert fresh(paid).status == orders.PAID
    assert claim(app).attempts == 1
    assert status_trail(paid)[-3:] == [(orders.PAID, orders.NEEDS_ATTENTION),
                                       (orders.NEEDS_ATTENTION, orders.PAID),
                                       (orders.PAID, orders.DELIVERING)]


@pytest.fixture
def three_attempts(config):
    config["DELIVERY_MAX_ATTEMPTS"] = 3
    return config


def test_retries_give_up_after_max_attempts(three_attempts, app, paid):
    for attempt in (1, 2):
        delivery = claim(app)
        record(app, delivery, "retry", message=f"timeout #{attempt}")
        assert Delivery.get_by_id(delivery.id).status == "pending"
    delivery = claim(app)
    assert delivery.attempts == 3
    record(app, delivery, "retry", message="timeout #3")
    current = Delivery.get_by_id(delivery.id)
    assert (current.status, current.last_error, current.lease_until) == ("failed", "timeout #3",
                                                                         None)
    assert fresh(paid).status == orders.NEEDS_ATTENTION
    last = OrderEvent.select().where(OrderEvent.order == paid.id).order_by(
        OrderEvent.id.desc()).first()
    assert (last.from_status, last.to_status) == (orders.DELIVERING, orders.NEEDS_ATTENTION)
    assert "3 attempt" in last.message and "timeout #3" in last.message
    assert claim(app) is None  # a failed delivery is never picked up again


def test_failed_result_needs_attention_at_once(app, paid):
    delivery = claim(app)
    record(app, delivery, "failed", message="account banned")
    current = Delivery.get_by_id(delivery.id)
    assert (current.status, current.last_error, current.attempts) == ("failed", "account banned",
                                                                      1)
    assert fresh(paid).status == orders.NEEDS_ATTENTION
    assert status_trail(paid)[-1] == (orders.DELIVERING, orders.NEEDS_ATTENTION)
    assert "account banned" in OrderEvent.select().order_by(OrderEvent.id.desc()).first().message


def test_a_stale_result_from_a_worker_whose_lease_ran_out_is_ignored(app, paid):
    slow = claim(app)  # worker A
    expire_lease(slow)
    fast = claim(app)  # worker B takes over
    assert fast.id == slow.id and fast.attempts == 2
    events_before = OrderEvent.select().count()

    record(app, slow, "failed", message="A's late answer")  # ignored: attempts changed
    current = Delivery.get_by_id(fast.id)
    assert (current.status, current.attempts, current.last_error) == ("working", 2, None)
    assert fresh(paid).status == orders.DELIVERING
    assert OrderEvent.select().count() == events_before

    record(app, fast, "delivered", reference="B-1")
    assert fresh(paid).status == orders.DELIVERED
    record(app, slow, "delivered", reference="A-1")  # still ignored after the fact
    assert Delivery.get_by_id(fast.id).reference == "B-1"
    assert OrderEvent.select().where(OrderEvent.kind == "delivery").count() == 1


def test_a_crashed_workers_delivery_is_claimed_again_and_credited_once(app, paid):
    backend = app.extensions["topup"].backends["sandbox"]
    crashed = claim(app)
    with app.app_context():
        first_answer = backend.deliver(crashed.order)  # credited, then the worker died
    assert first_answer.status == "delivered"
    assert claim(app) is None  # still leased
    expire_lease(crashed)

    from topup.worker import deliver_once

    assert deliver_once(app) is True
    current = Delivery.get_by_id(crashed.id)
    assert (current.status, current.attempts) == ("done", 2)
    assert current.reference == first_answer.reference
    assert fresh(paid).status == orders.DELIVERED
    [credit] = SandboxCredit.select()
    assert credit.order_ref == paid.public_id and credit.attempts == 2
    assert credit.reference == first_answer.reference
    assert status_trail(paid).count((orders.PAID, orders.DELIVERING)) == 1


def test_delivery_of_an_order_escalated_meanwhile_is_canceled(app, paid):
    with app.app_context():
        with database.atomic():
            orders._transition(orders._locked(paid.id), orders.NEEDS_ATTENTION, "a person looks")
    assert claim(app) is None
    assert deliveries(paid)[0].status == "canceled"
    assert fresh(paid).status == orders.NEEDS_ATTENTION
    assert SandboxCredit.select().count() == 0


def test_public_ids_never_begin_with_a_dash_or_underscore(monkeypatch):
    """Such an id would read as a spreadsheet formula in an export, or as an option."""
    tokens = iter(["-starts-with-dash00000", "_underscore000000000000", "Good0000000000000000000"])
    monkeypatch.setattr(orders.secrets, "token_urlsafe", lambda size: next(tokens))
    assert orders._new_public_id() == "Good0000000000000000000"
