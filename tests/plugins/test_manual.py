"""Manual fulfilment: paid orders wait in the operator's queue until a person
marks them delivered or failed; the operator is told about new work."""
from __future__ import annotations

import http.server
import json
import threading

import pytest

from topup import orders, signing, worker
from topup.cli import main
from topup.models import Delivery, Order, OrderEvent, Product
from topup_plugins.manual import ManualTask

from tests.conftest import place_order
from tests.conftest import pay

SECRET = "manual-notify-secret"
pytestmark = pytest.mark.usefixtures("manual_config")  # configured before any app is built


class Receiver:
    """The operator's own endpoint: verifies our signature, keeps what arrived."""

    def __init__(self, status: int = 200):
        self.status = status
        self.bodies: list[dict] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                signing.verify(SECRET, raw, self.headers["Topup-Signature"])
                if receiver.status == 200:
                    receiver.bodies.append(json.loads(raw))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/topup"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def manual_config(config, receiver):
    config["PLUGINS"]["manual"] = {"notify_url": receiver.url, "notify_secret": SECRET}
    return config


@pytest.fixture
def manual_product(manual_config, app):
    Product.update(delivery_backend="manual").execute()
    return Product.get()


@pytest.fixture
def queued(manual_product, app, client):
    with app.app_context():
        order = place_order(client, account="@fan.account")
    pay(app, order)
    assert worker.deliver_once(app)
    return order


def fresh(order):
    return Order.get_by_id(order.id)


def test_a_paid_order_waits_in_the_queue_and_the_operator_is_told_once(app, client, queued, receiver):
    delivery = Delivery.get(Delivery.order == queued.id)
    assert (delivery.status, delivery.attempts) == ("waiting", 1)
    assert fresh(queued).status == orders.DELIVERING
    assert receiver.bodies == [{"type": "delivery.waiting", "id": queued.public_id,
                                "product": "tiktok-coins", "quantity": queued.quantity,
                                "account_id": "fan.account"}]
    # The worker checks back from time to time: no news, no second notification.
    Delivery.update(next_attempt_at=delivery.created_at).execute()
    assert worker.deliver_once(app)
    assert Delivery.get_by_id(delivery.id).status == "waiting" and len(receiver.bodies) == 1

    page = client.get(f"/orders/{queued.public_id}").get_data(as_text=True)
    assert "in the queue" in page and "@fan.account" in page
    assert 'every 30s' in page  # a queue is slow: the page asks less often

    listed = app.test_cli_runner().invoke(main, ["queue"])
    assert queued.public_id in listed.output and "1 waiting on manual" in listed.output


def test_the_operator_marks_it_delivered_and_the_buyer_sees_it(app, client, queued):
    result = app.test_cli_runner().invoke(
        main, ["order", "delivered", queued.public_id, "--reference", "TT-5521", "--note", "via app"])
    assert result.exit_code == 0, result.output
    assert f"order {queued.public_id}: delivered" in result.output
    assert fresh(queued).status == orders.DELIVERED
    assert Delivery.get(Delivery.order == queued.id).reference == "TT-5521"
    last = OrderEvent.select().order_by(OrderEvent.id.desc()).first()
    assert last.actor.startswith("cli:") and "TT-5521: via app" in last.message
    page = client.get(f"/orders/{queued.public_id}").get_data(as_text=True)
    assert "Delivered" in page and "TT-5521" in page
    assert "0 waiting on manual" in app.test_cli_runner().invoke(main, ["queue"]).output

    shown = app.test_cli_runner().invoke(main, ["order", "show", queued.public_id])
    assert "delivered by hand" in shown.output.lower() and "delivery via manual: done" in shown.output


def test_the_operator_marks_it_failed_then_retries(app, queued, receiver):
    runner = app.test_cli_runner()
    failed = runner.invoke(main, ["order", "failed", queued.public_id, "--reason", "account private"])
    assert failed.exit_code == 0 and fresh(queued).status == orders.NEEDS_ATTENTION
    again = runner.invoke(main, ["order", "failed", queued.public_id, "--reason", "twice"])
    assert again.exit_code == 1 and "needs attention is not being delivered" in again.output
    assert runner.invoke(main, ["order", "retry", queued.public_id]).exit_code == 0
    assert worker.deliver_once(app)
    assert Delivery.get(Delivery.order == queued.id).status == "waiting"
    assert len(receiver.bodies) == 1  # told once per order, not once per try
    unknown = runner.invoke(main, ["order", "delivered", "no-such-order", "--reference", "x"])
    assert unknown.exit_code == 1 and "No order no-such-order" in unknown.output


def test_a_notification_that_fails_is_retried_by_housekeeping(manual_product, app, client, receiver):
    receiver.status = 503
    with app.app_context():
        order = place_order(client)
    pay(app, order)
    assert worker.deliver_once(app)
    task = ManualTask.get(ManualTask.order_ref == order.public_id)
    assert task.notified_at is None and task.notify_attempts == 1 and "503" in task.last_error
    assert Delivery.get(Delivery.order == order.id).status == "waiting"  # the order still waits

    receiver.status = 200
    worker.sweep(app)
    task = ManualTask.get_by_id(task.id)
    assert task.notified_at is not None and task.last_error is None
    assert [body["id"] for body in receiver.bodies] == [order.public_id]
    worker.sweep(app)
    assert len(receiver.bodies) == 1


def test_the_account_check_shows_the_username_without_a_nickname(manual_product, client):
    html = client.get("/tiktok-coins/account?account=@Some.Fan",
                      headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "send to @some.fan" in html and "check the spelling" in html and "✓" not in html


def test_notify_url_without_a_secret_is_a_reported_misconfiguration(config, tmp_path, monkeypatch):
    from topup import create_app

    config["PLUGINS"]["manual"] = {"notify_url": "http://127.0.0.1:9/x"}
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app(config)
    registry = app.extensions["topup"]
    assert "manual" not in registry.backends
    assert "notify_secret" in registry.errors["manual"]






def test_the_operator_can_be_told_by_e_mail(config, manual_product, receiver):
    from topup import create_app
    from tests.smtp import Inbox

    inbox = Inbox().start()
    try:
        config.update(inbox.config(), MAIL_FROM="shop@coins.example")
        config["PLUGINS"]["manual"] = {"notify_email": "ops@coins.example"}
        app = create_app(config)
        client = app.test_client()
        with app.app_context():
            order = place_order(client, account="@mail.me")
        pay(app, order)
        assert worker.deliver_once(app)
        [(to, message)] = inbox.messages
        assert to == ["ops@coins.example"]
        assert message["Subject"] == f"To deliver: {order.quantity} coins to mail.me"
        body = message.get_content()
        assert f"topup order delivered {order.public_id} --reference" in body
        assert message["Auto-Submitted"] == "auto-generated"
        assert receiver.bodies == []  # no webhook configured this time
    finally:
        inbox.stop()


def test_money_actions_from_the_command_line(app, client, manual_product):
    """A bank transfer seen by the operator: paid by hand, then refunded; another canceled."""
    runner = app.test_cli_runner()
    with app.app_context():
        transfer, abandoned = place_order(client), place_order(client)
    paid = runner.invoke(main, ["order", "paid", transfer.public_id, "--reference", "BANK-991"])
    assert paid.exit_code == 0, paid.output
    assert fresh(transfer).status == orders.PAID
    assert Delivery.select().where(Delivery.order == transfer.id).count() == 1
    refunded = runner.invoke(main, ["order", "refund", transfer.public_id, "--reason", "buyer asked"])
    assert refunded.exit_code == 0, refunded.output
    assert fresh(transfer).status == orders.REFUNDED
    canceled = runner.invoke(main, ["order", "cancel", abandoned.public_id, "--reason", "duplicate"])
    assert canceled.exit_code == 0 and fresh(abandoned).status == orders.CANCELED
    again = runner.invoke(main, ["order", "cancel", abandoned.public_id, "--reason", "twice"])
    assert again.exit_code == 1 and again.output.startswith("Error:")
    actors = {event.actor for event in OrderEvent.select().where(
        OrderEvent.order.in_([transfer.id, abandoned.id]), OrderEvent.kind == "status",
        OrderEvent.from_status.is_null(False))}
    assert all(actor.startswith("cli:") or actor == "system" for actor in actors)
    assert any(actor.startswith("cli:") for actor in actors)
