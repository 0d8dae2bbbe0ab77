"""The reconciler: a payment whose webhook never came is re-asked with the
provider's fetch_status and healed through the same path as a webhook; the
answer is applied once however often it is asked; stuck work is reported."""
from __future__ import annotations

from datetime import timedelta

import pytest

from topup import orders, reconcile, worker
from topup.cli import main
from topup.models import Delivery, Order, Payment, utcnow
from topup_plugins.sandbox.delivery import SandboxCredit
from topup_plugins.sandbox.payment import SandboxCheckout

from tests.conftest import place_order, plugin_problems


def approve_at_the_provider(order, status="approved") -> None:
    """The buyer paid at the sandbox checkout, and its webhook got lost."""
    payment = Payment.get(Payment.order == order.id)
    SandboxCheckout.update(status=status).where(SandboxCheckout.ref == payment.provider_ref).execute()


def age(order, seconds: int) -> None:
    Payment.update(created_at=utcnow() - timedelta(seconds=seconds)).where(
        Payment.order == order.id).execute()


@pytest.fixture
def unpaid(app, client):
    with app.app_context():
        return place_order(client)


def run(app) -> dict:
    with app.app_context():
        return reconcile.payments()


def test_a_missed_webhook_is_healed_and_the_order_delivered(app, unpaid):
    approve_at_the_provider(unpaid)
    assert run(app)["asked"] == 0  # the webhook's turn first: too fresh to ask
    age(unpaid, 120)
    assert run(app) == {"asked": 1, "applied": 1, "errors": 0}
    assert Order.get_by_id(unpaid.id).status == orders.PAID
    assert worker.deliver_once(app)
    assert Order.get_by_id(unpaid.id).status == orders.DELIVERED
    assert SandboxCredit.select().count() == 1
    # Asked again later: the same event id, nothing changes.
    Payment.update(checked_at=utcnow() - timedelta(minutes=5)).execute()
    assert run(app) == {"asked": 0, "applied": 0, "errors": 0}  # paid: nothing left to ask


def test_an_open_payment_is_asked_at_most_once_a_round(app, unpaid):
    age(unpaid, 120)
    assert run(app) == {"asked": 1, "applied": 0, "errors": 0}
    assert run(app)["asked"] == 0  # checked just now
    assert Payment.get(Payment.order == unpaid.id).checked_at is not None
    assert Order.get_by_id(unpaid.id).status == orders.AWAITING_PAYMENT


def test_money_that_came_after_expiry_needs_attention(app, unpaid):
    Order.update(expires_at=utcnow() - timedelta(minutes=1)).execute()
    with app.app_context():
        assert orders.expire_overdue() == 1
    approve_at_the_provider(unpaid)
    age(unpaid, 3600)
    assert run(app)["applied"] == 1
    assert Order.get_by_id(unpaid.id).status == orders.NEEDS_ATTENTION
    assert Delivery.select().count() == 0  # a person decides: deliver or refund


def test_a_provider_that_is_down_is_counted_and_asked_again(app, unpaid, monkeypatch):
    from topup_plugins.sandbox.payment import SandboxPayment

    def down(self, payment):
        raise ConnectionError("provider unreachable")

    monkeypatch.setattr(SandboxPayment, "fetch_status", down)
    age(unpaid, 120)
    assert run(app) == {"asked": 1, "applied": 0, "errors": 1}
    assert Order.get_by_id(unpaid.id).status == orders.AWAITING_PAYMENT
    assert plugin_problems() == {}  # an outage is not a broken plugin


def test_the_worker_sweep_reconciles(app, unpaid):
    approve_at_the_provider(unpaid, "declined")
    age(unpaid, 120)
    worker.sweep(app)
    assert Order.get_by_id(unpaid.id).status == orders.FAILED


def test_topup_reconcile_reports_what_is_stuck(app, client, runner):
    with app.app_context():
        late, waiting = place_order(client), place_order(client)
    for order in (late, waiting):
        approve_at_the_provider(order)
        age(order, 120)
    result = runner.invoke(main, ["reconcile"])
    assert result.exit_code == 0, result.output
    assert "asked about 2 payment(s), 2 changed, 0 provider error(s)" in result.output
    # Nobody runs a worker: the deliveries become overdue, and the report says so.
    Delivery.update(next_attempt_at=utcnow() - timedelta(minutes=10)).execute()
    report = runner.invoke(main, ["reconcile"]).output
    assert "deliveries overdue: 2 (is a worker running?)" in report
    assert "needs attention: 0" in report
