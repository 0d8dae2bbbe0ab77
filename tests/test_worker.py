"""The delivery worker (topup.worker): deliver_once, sweep and the Worker threads,
including containment of broken backends and concurrent claims."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from topup import orders, worker
from topup.delivery import DeliveryResult
from topup.models import Delivery, Order, OrderEvent, utcnow
from topup_plugins.sandbox.delivery import SandboxCredit

from tests.conftest import (
    pay, place_order, plugin_problems, sandbox_event, signed_headers, wait_for,
)


def paid_orders(app, client, count: int) -> list[Order]:
    with app.app_context():
        placed = [place_order(client, account=f"@buyer_{index}") for index in range(count)]
    for order in placed:
        pay(app, order)
    return placed


def status(order: Order) -> str:
    return Order.get_by_id(order.id).status


def delivery_of(order: Order) -> Delivery:
    return Delivery.get(Delivery.order == order.id)


@pytest.fixture
def started_worker(app):
    running = []

    def start(threads: int = 2):
        running.append(worker.Worker(app, threads).start())
        return running[-1]

    yield start
    for w in running:
        w.stop()


# --- deliver_once ------------------------------------------------------------------


def test_deliver_once_with_nothing_to_do(app):
    assert worker.deliver_once(app) is False


def test_deliver_once_delivers_a_paid_order(app, client):
    [order] = paid_orders(app, client, 1)
    assert worker.deliver_once(app) is True
    assert worker.deliver_once(app) is False
    assert status(order) == orders.DELIVERED
    delivery = delivery_of(order)
    [credit] = SandboxCredit.select()
    assert (delivery.status, delivery.attempts, delivery.reference) == ("done", 1,
                                                                        credit.reference)
    assert (credit.order_ref, credit.account_id, credit.quantity) == (
        order.public_id, order.account_id, order.quantity)


class Flaky:
    """Wraps a backend; raises on the first `failures` deliveries."""

    def __init__(self, inner, failures: int):
        self.inner, self.failures, self.calls = inner, failures, 0

    def __getattr__(self, name):  # lookup_account, id, name ... as the real backend
        return getattr(self.inner, name)

    def deliver(self, order):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("reseller API unreachable")
        return self.inner.deliver(order)


def test_a_backend_that_raises_is_contained_and_retried(app, client):
    registry = app.extensions["topup"]
    registry.backends["sandbox"] = Flaky(registry.backends["sandbox"], failures=1)
    [order] = paid_orders(app, client, 1)

    assert worker.deliver_once(app) is True
    delivery = delivery_of(order)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert delivery.last_error == "ConnectionError: reseller API unreachable"
    assert delivery.lease_until is None
    assert status(order) == orders.DELIVERING
    assert plugin_problems()["sandbox"] == "ConnectionError: reseller API unreachable"
    assert SandboxCredit.select().count() == 0

    assert worker.deliver_once(app) is True
    assert status(order) == orders.DELIVERED
    assert delivery_of(order).attempts == 2
    assert SandboxCredit.select().count() == 1


def test_a_delivery_for_a_backend_that_is_not_loaded_waits(app, client):
    [order] = paid_orders(app, client, 1)
    del app.extensions["topup"].backends["sandbox"]
    assert worker.deliver_once(app) is True
    delivery = delivery_of(order)
    assert delivery.status == "pending"
    assert "not loaded" in delivery.last_error and "sandbox" in delivery.last_error
    assert status(order) == orders.DELIVERING


# --- the Worker threads --------------------------------------------------------------


def test_two_worker_threads_deliver_every_order_paid_by_webhook_once(app, client,
                                                                     started_worker):
    with app.app_context():
        placed = [place_order(client, account=f"@fan_{index}") for index in range(5)]
    for order in placed:
        body = sandbox_event(order)
        assert client.post("/webhooks/sandbox", data=body,
                           headers=signed_headers(body)).status_code == 200
    started_worker(2)
    wait_for(lambda: all(status(order) == orders.DELIVERED for order in placed))
    assert SandboxCredit.select().count() == 5
    assert {c.order_ref for c in SandboxCredit.select()} == {o.public_id for o in placed}
    assert all((delivery_of(order).status, delivery_of(order).attempts) == ("done", 1)
               for order in placed)
    for order in placed:
        trail = [(e.from_status, e.to_status) for e in OrderEvent.select().where(
            OrderEvent.order == order.id, OrderEvent.kind == "status").order_by(OrderEvent.id)]
        assert trail[-2:] == [(orders.PAID, orders.DELIVERING),
                              (orders.DELIVERING, orders.DELIVERED)]


@pytest.fixture
def fails_twice(config):
    config["PLUGINS"]["sandbox_delivery"] = {"fail_times": 2}
    config["DELIVERY_MAX_ATTEMPTS"] = 3
    return config


def test_sandbox_told_to_fail_twice_delivers_on_the_third_attempt(fails_twice, app, client,
                                                                   started_worker):
    [order] = paid_orders(app, client, 1)
    started_worker(2)
    wait_for(lambda: status(order) == orders.DELIVERED)
    [credit] = SandboxCredit.select()
    assert credit.attempts == 3 and credit.credited_at is not None
    delivery = delivery_of(order)
    assert (delivery.status, delivery.attempts, delivery.reference) == ("done", 3,
                                                                        credit.reference)
    attempts = [e.message for e in OrderEvent.select().where(
        OrderEvent.order == order.id, OrderEvent.kind == "delivery").order_by(OrderEvent.id)]
    assert [m.split(":")[0] for m in attempts] == ["Attempt 1", "Attempt 2", "Attempt 3"]
    assert "retry" in attempts[0] and "sandbox told to fail" in attempts[0]
    assert "delivered" in attempts[2]


@pytest.fixture
def always_fails(config):
    config["PLUGINS"]["sandbox_delivery"] = {"fail_times": 100}
    config["DELIVERY_MAX_ATTEMPTS"] = 3
    return config


def test_a_delivery_that_keeps_failing_needs_attention(always_fails, app, client,
                                                        started_worker):
    [order] = paid_orders(app, client, 1)
    started_worker(1)
    wait_for(lambda: status(order) == orders.NEEDS_ATTENTION)
    delivery = delivery_of(order)
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    credit = SandboxCredit.get()
    assert credit.attempts == 3 and credit.credited_at is None


def test_the_worker_sweeps_overdue_orders(app, client, started_worker):
    with app.app_context():
        overdue = place_order(client)
    Order.update(expires_at=utcnow() - timedelta(seconds=1)).execute()
    started_worker(1)
    wait_for(lambda: status(overdue) == orders.EXPIRED)


def test_a_loop_error_does_not_kill_the_worker(app, client, started_worker, monkeypatch):
    real = worker.deliver_once
    calls = []

    def hiccup(app_):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database went away for a moment")
        return real(app_)

    monkeypatch.setattr(worker, "deliver_once", hiccup)
    [order] = paid_orders(app, client, 1)
    started_worker(1)
    wait_for(lambda: status(order) == orders.DELIVERED)
    assert len(calls) >= 2


def test_a_long_sweep_does_not_hold_deliveries_up(app, client, started_worker, monkeypatch):
    sweeping, release = threading.Event(), threading.Event()

    def long_sweep(app_):  # thousands of orders expiring at once, say
        sweeping.set()
        release.wait(30)

    monkeypatch.setattr(worker, "sweep", long_sweep)
    started_worker(1)
    assert sweeping.wait(5)
    [order] = paid_orders(app, client, 1)
    try:
        wait_for(lambda: status(order) == orders.DELIVERED)
    finally:
        release.set()


def test_stop_ends_every_thread(app):
    w = worker.Worker(app, 3).start()
    assert len(w.threads) == 3 + 1 and all(t.is_alive() for t in w.threads)  # and the sweeper
    w.stop()
    assert not any(t.is_alive() for t in w.threads)


# --- concurrency -----------------------------------------------------------------------


@pytest.fixture
def slow_sandbox(config):
    config["PLUGINS"]["sandbox_delivery"] = {"delay_seconds": 0.02}
    return config


def run_threads(count: int, target) -> list:
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def run(index):
        try:
            barrier.wait(10)
            results[index] = target()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    return results


def test_concurrent_deliver_once_delivers_each_order_once(slow_sandbox, app, client):
    placed = paid_orders(app, client, 6)

    def drain():
        worked = 0
        while worker.deliver_once(app):
            worked += 1
        return worked

    worked = run_threads(8, drain)
    assert sum(worked) == 6  # one claim per order, no double work
    assert all(status(order) == orders.DELIVERED for order in placed)
    assert SandboxCredit.select().count() == 6
    assert all(credit.attempts == 1 for credit in SandboxCredit.select())
    assert all(delivery_of(order).attempts == 1 for order in placed)
    delivering = OrderEvent.select().where(OrderEvent.to_status == orders.DELIVERING).count()
    assert delivering == 6


def test_concurrent_claims_of_one_due_delivery_have_one_winner(app, client):
    [order] = paid_orders(app, client, 1)

    def claim():
        with app.app_context():
            delivery = orders.claim_delivery()
            return delivery.id if delivery else None

    results = run_threads(8, claim)
    assert [r for r in results if r is not None] == [delivery_of(order).id]
    delivery = delivery_of(order)
    assert (delivery.status, delivery.attempts) == ("working", 1)
    assert OrderEvent.select().where(OrderEvent.to_status == orders.DELIVERING).count() == 1


def test_concurrent_results_for_one_attempt_are_recorded_once(app, client):
    [order] = paid_orders(app, client, 1)
    with app.app_context():
        claimed = orders.claim_delivery()

    def record():
        with app.app_context():
            orders.record_delivery_result(claimed, DeliveryResult("delivered", reference="R-1"))

    run_threads(6, record)
    assert status(order) == orders.DELIVERED
    assert OrderEvent.select().where(OrderEvent.kind == "delivery").count() == 1
    assert OrderEvent.select().where(OrderEvent.to_status == orders.DELIVERED).count() == 1


def test_a_payment_wakes_the_idle_worker_at_once(app, client, started_worker):
    """The paid commit signals this process's worker threads: no waiting for a poll."""
    app.config["WORKER_POLL_SECONDS"] = 30
    with app.app_context():
        order = place_order(client)
    started_worker(1)
    import time
    time.sleep(0.3)  # the thread has swept and is now idle for up to 30 s
    paid_at = time.monotonic()
    body = sandbox_event(order)
    assert client.post("/webhooks/sandbox", data=body, headers=signed_headers(body)).status_code == 200
    wait_for(lambda: status(order) == orders.DELIVERED, timeout=5)
    assert time.monotonic() - paid_at < 3
