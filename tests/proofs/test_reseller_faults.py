"""Reseller faults in any order: a Hypothesis-chosen run of Digiflazz answers —
HTTP 500, 429, a garbled body, an answer lost after the purchase (timeout),
pending then settled either way, cut-offs, a wrong account — through the real
worker path, until the order settles. Whatever the run: at most one purchase;
delivered means exactly one purchase, whose serial number is the delivery's
reference; otherwise the order needs a person, with the reason in its
timeline, and nothing was bought.

Each fault alone, with its exact messages, is in tests/plugins/test_digiflazz.py
(timeout after success, 500, 429, garbage, cut-off, wrong account, no balance,
unknown code, too old to check)."""
from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topup import orders, worker
from topup.models import Delivery, Order, OrderEvent, utcnow
from topup_plugins.digiflazz.models import DigiflazzTransaction

from tests.plugins.test_digiflazz import paid_order
from tests.plugins.test_digiflazz import config, fake  # noqa: F401 (its fixtures, used here)

FAULTS = st.sampled_from([None, "500", "429", "429", "garbage", "slow"])
OUTCOMES = st.sampled_from(["Sukses", "Sukses", "Pending", ("Gagal", "58"), ("Gagal", "70"),
                            ("Gagal", "54")])


def test_any_run_of_reseller_faults_buys_at_most_once_or_needs_a_person(app, client, fake):
    app.config.update(DELIVERY_CHECK_MIN_SECONDS=0, DELIVERY_MAX_ATTEMPTS=4)
    fake.slow_seconds = 0.7  # the backend gives up after 0.5 s: the answer is lost
    runs = iter(range(10**6))

    @settings(max_examples=25, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(script=st.lists(FAULTS, max_size=6), outcomes=st.lists(OUTCOMES, max_size=4),
           settles=st.lists(st.sampled_from(["Sukses", "Gagal"]), min_size=4, max_size=4))
    def run(script, outcomes, settles):
        fake.script, fake.outcomes = list(script), list(outcomes)
        order = paid_order(app, client, account=f"@faulty_{next(runs)}")
        for _ in range(30):
            current = Order.get_by_id(order.id).status
            if current in (orders.DELIVERED, orders.NEEDS_ATTENTION):
                break
            for row in DigiflazzTransaction.select().where(
                    DigiflazzTransaction.order_ref == order.public_id):
                held = fake.ledger.get(row.ref_id)
                if held is not None and held["status"] == "Pending":  # the seller settles
                    fake.complete(row.ref_id, settles[row.seq % len(settles)])
            Delivery.update(next_attempt_at=utcnow() - timedelta(seconds=1)).where(
                Delivery.order == order.id).execute()
            worker.deliver_once(app)
        else:
            raise AssertionError(f"order never settled: {Order.get_by_id(order.id).status}")

        mine = [row.ref_id for row in DigiflazzTransaction.select().where(
            DigiflazzTransaction.order_ref == order.public_id)]
        bought = [fake.ledger[ref] for ref in mine
                  if ref in fake.ledger and fake.ledger[ref]["status"] == "Sukses"]
        assert len(bought) <= 1, bought
        delivery = Delivery.get(Delivery.order == order.id)
        if current == orders.DELIVERED:
            assert len(bought) == 1 and delivery.reference == bought[0]["sn"]
            assert delivery.status == "done"
        else:
            assert bought == [], "bought, yet the order waits for a person"
            why = (OrderEvent.select().where(OrderEvent.order == order.id,
                                             OrderEvent.to_status == orders.NEEDS_ATTENTION)
                   .order_by(OrderEvent.id.desc()).first())
            reason = why.message.split(": ", 1)[1]
            assert why.message.startswith("Delivery gave up after") and reason.strip()
            assert delivery.status == "failed" and delivery.last_error
        assert OrderEvent.select().where(OrderEvent.order == order.id,
                                         OrderEvent.to_status == orders.DELIVERED).count() <= 1

    run()
