"""topup.db: prepared queries and inserts give what peewee gives; SQLite
writers of one process queue on the writer lock and always release it."""
from __future__ import annotations

import threading
import time

import pytest
from peewee import JOIN

from topup.db import Prepared, database, is_sqlite
from topup.models import Delivery, Order, OrderEvent, Payment, Product, SchemaVersion

from tests.conftest import pay, place_order
from tests.test_worker import run_threads


def _joined(public_id):
    return (Order.select(Order, Product, Payment, Delivery)
            .join(Product).switch(Order)
            .join(Payment, JOIN.LEFT_OUTER).switch(Order)
            .join(Delivery, JOIN.LEFT_OUTER)
            .where(Order.public_id == public_id)
            .order_by(Payment.id.desc()).limit(1))


def test_a_prepared_query_gives_what_peewee_gives_and_is_built_once(app, client):
    order = place_order(client)
    pay(app, order)
    prepared = Prepared(_joined)
    with app.app_context():
        mine, theirs = prepared.first(order.public_id), _joined(order.public_id).first()
        assert mine.__data__ == theirs.__data__
        assert mine.product.__data__ == theirs.product.__data__
        assert mine.payment.__data__ == theirs.payment.__data__
        assert mine.delivery.__data__ == theirs.delivery.__data__
        assert prepared.first("no-such-order") is None
        prepared.first(order.public_id)
        assert len(prepared._built) == 1


def test_later_runs_reuse_the_column_mapping_and_still_give_what_peewee_gives(app, client):
    """The mapping from columns to models is worked out once, on whichever
    row comes first: an order without a delivery, then one with, then again."""
    unpaid, paid = place_order(client), place_order(client)
    pay(app, paid)
    prepared = Prepared(_joined)

    def data(row):
        joined = [getattr(row, name, None) for name in ("product", "payment", "delivery")]
        return row.__data__, [None if m is None or m.id is None else m.__data__ for m in joined]

    with app.app_context():
        for order in (unpaid, paid, unpaid, paid):
            assert data(prepared.first(order.public_id)) == data(_joined(order.public_id).first())
        assert data(prepared.first(paid.public_id))[1][2]["status"] == "pending"  # its delivery
        assert data(prepared.first(unpaid.public_id))[1][2] is None
        assert len(prepared._resolved) == 1


def test_a_prepared_row_is_the_drivers_tuple(app, client):
    order = place_order(client)
    prepared = Prepared(lambda public_id: Order.select(Order.status, Order.amount)
                        .where(Order.public_id == public_id))
    with app.app_context():
        assert tuple(prepared.row(order.public_id)) == ("awaiting_payment", order.amount)
        assert prepared.row("nope") is None


def test_a_prepared_update_changes_what_peewee_would_and_says_how_many(app, client):
    """The Buy path's "payment started": the same row as peewee's update makes,
    and nothing once the payment has moved on (its compare-and-set)."""
    from topup.orders import _PAYMENT_STARTED

    order = place_order(client)  # its payment is started already
    with app.app_context():
        payment = order.latest_payment()
        Payment.update(status="created").where(Payment.id == payment.id).execute()
        action = {"kind": "redirect", "url": "https://pay.example/x"}
        assert _PAYMENT_STARTED.execute("ref-1", Payment.action.db_value(action),
                                        Payment.updated_at.db_value(payment.created_at),
                                        payment.id) == 1
        mine = Payment.get_by_id(payment.id)
        assert (mine.provider_ref, mine.action, mine.status, mine.updated_at) == (
            "ref-1", action, "started", payment.created_at)
        assert _PAYMENT_STARTED.execute("ref-2", "{}", mine.updated_at, payment.id) == 0
        assert Payment.get_by_id(payment.id).provider_ref == "ref-1"


def test_an_argument_that_never_reaches_the_sql_is_refused(app):
    prepared = Prepared(lambda unused: Order.select().where(Order.id == 1))
    with app.app_context(), pytest.raises(ValueError, match="exactly once"):
        prepared.first("x")


def test_create_inserts_what_peewee_would_with_defaults_and_the_new_id(app, client):
    order = place_order(client)
    with app.app_context():
        event = OrderEvent.create(order=order, kind="note", message="hello", actor="test")
        assert event.id is not None and not event.dirty_fields
        stored = OrderEvent.get_by_id(event.id)
        assert (stored.order_id, stored.kind, stored.message, stored.actor) == (
            order.id, "note", "hello", "test")
        assert stored.created_at == event.created_at  # the default, as inserted
        assert stored.from_status is None  # not given: NULL, as peewee leaves it
        # A model whose primary key is given keeps peewee's own create.
        version = SchemaVersion.create(id=999, version=1)
        assert SchemaVersion.get_by_id(999).version == version.version == 1


def _sqlite_only(app):
    with app.app_context():
        if not is_sqlite():
            pytest.skip("the writer queue is SQLite's (Postgres has row locks)")


def test_writers_from_many_threads_all_commit(app, client):
    """On SQLite they queue on the writer lock; none may time out or be lost."""
    order = place_order(client)

    def write():
        with app.app_context():
            for number in range(20):
                with database.atomic():
                    OrderEvent.create(order=order, kind="note",
                                      message=f"{threading.get_ident()}-{number}")

    run_threads(8, write)
    with app.app_context():
        assert OrderEvent.select().where(OrderEvent.kind == "note").count() == 160


def test_a_failed_transaction_frees_the_writer_lock(app, client):
    _sqlite_only(app)
    with app.app_context():
        with pytest.raises(RuntimeError), database.atomic():
            OrderEvent.select().count()
            raise RuntimeError("the view failed half-way")
        assert not database.obj._writer.locked()
        started = time.monotonic()
        freed = []

        def other_thread():
            with app.app_context(), database.atomic():
                freed.append(time.monotonic() - started)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(5)
        assert freed and freed[0] < 1  # not a busy_timeout's wait


def test_a_write_outside_a_transaction_queues_too_and_a_read_does_not(app, client):
    """Left to SQLite's busy handler, it would seldom find the lock free between
    queued writers, and fail after busy_timeout."""
    _sqlite_only(app)
    order = place_order(client)
    writer = database.obj._writer
    writer.acquire()  # as a transaction in another thread would
    read, written = threading.Event(), threading.Event()

    def other_thread():
        with app.app_context():
            Order.select().count()
            read.set()
            OrderEvent.create(order=order, kind="note", message="outside a transaction")
            written.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    try:
        assert read.wait(5)
        assert not written.wait(0.3)  # queued behind the holder
    finally:
        writer.release()
    assert written.wait(5)
    thread.join(5)
    assert not writer.locked()
