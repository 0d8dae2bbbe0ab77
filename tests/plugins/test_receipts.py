"""Receipts: the buyer's e-mails (paid, delivered, needs attention, refunded),
each sent exactly once through a real SMTP server on loopback, retried by
housekeeping when that server is down."""
from __future__ import annotations

import logging
import re
import threading
from datetime import timedelta

import pytest

from topup import orders, worker
from topup.models import Delivery, Order, Payment, utcnow
from topup.money import Money
from topup.payments import PaymentEvent
from topup_plugins.receipts import outbox
from topup_plugins.receipts.models import ReceiptMail
from topup_plugins.sandbox.delivery import SandboxDelivery

from tests.conftest import pay, place_order, plugin_problems, sandbox_event, signed_headers
from tests.smtp import Inbox, free_port

BUYER = "buyer@example.com"
PASSWORD = "smtp-pass-never-logged"


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def smtp(smtp_port):
    inbox = Inbox(smtp_port)
    yield inbox
    inbox.stop()


@pytest.fixture
def inbox(smtp):
    return smtp.start()


@pytest.fixture
def config(config, smtp_port):
    return {**config, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtp_port,
            "SMTP_SECURITY": "none", "SMTP_TIMEOUT_SECONDS": 5,
            "MAIL_FROM": "Coin Shop <shop@coins.example>",
            "PUBLIC_URL": "https://coins.example/", "SHOP_NAME": "Coin Shop"}


# --- helpers -------------------------------------------------------------------------


def refund(app, order: Order) -> str:
    payment = Payment.get(Payment.order == order.id)
    event = PaymentEvent(event_id=f"evt_{payment.provider_ref}_refund", kind="refunded",
                         payment_ref=payment.provider_ref)
    with app.app_context():
        return orders.apply_payment_event("sandbox", event)


def housekeeping(app) -> None:
    with app.app_context():
        app.extensions["topup"].pm.hook.housekeeping()


def make_due(order: Order) -> None:
    """As if the backoff had passed."""
    (ReceiptMail.update(next_attempt_at=utcnow() - timedelta(seconds=1))
     .where(ReceiptMail.order_ref == order.public_id).execute())


def row(order: Order, kind: str) -> ReceiptMail:
    return ReceiptMail.get(ReceiptMail.order_ref == order.public_id, ReceiptMail.kind == kind)


def parts(message) -> tuple[str, str]:
    return (message.get_body(("plain",)).get_content(),
            message.get_body(("html",)).get_content())


def kinds(inbox: Inbox) -> list[str]:
    return [re.search(r": (.+) \(order", message["Subject"]).group(1)
            for message in inbox.received()]


# --- what is sent --------------------------------------------------------------------


def test_paid_order_gets_one_payment_receipt(app, client, inbox):
    order = place_order(client, email=BUYER, coins=700)
    assert pay(app, order) == "applied"
    [(recipients, message)] = inbox.messages
    assert recipients == [BUYER] and message["To"] == BUYER
    assert message["From"] == "Coin Shop <shop@coins.example>"
    assert message["Subject"] == (
        f"Your 700 TikTok Coins: payment received (order {order.public_id[:8]})")
    assert message["Auto-Submitted"] == "auto-generated"
    text, html = parts(message)
    total = order.total.format("en")  # what the order page shows
    link = f"https://coins.example/orders/{order.public_id}"
    assert total == "$9.38"
    for part in (text, html):
        assert total in part and link in part and "@demo_user" in part
        assert "700 coins" in part and order.public_id in part and "Coin Shop" in part
    assert "We received your payment of $9.38" in text
    sent = row(order, "paid")
    assert (sent.to, sent.attempts, sent.last_error) == (BUYER, 1, None)
    assert sent.sent_at is not None and sent.message_id == message["Message-ID"]


def test_delivered_receipt_has_the_reference(app, client, inbox):
    order = place_order(client, email=BUYER)
    pay(app, order)
    assert worker.deliver_once(app) is True
    assert kinds(inbox) == ["payment received", "delivered"]
    message = inbox.received()[1]
    reference = Delivery.get(Delivery.order == order.id).reference
    assert reference and message["Subject"] == (
        f"Your 70 TikTok Coins: delivered (order {order.public_id[:8]})")
    text, html = parts(message)
    assert f"Reference: {reference}" in text and reference in html
    assert "70 coins were added to @demo_user." in text
    assert "Your code" not in text


def test_voucher_code_from_the_backend_is_in_the_delivered_receipt(app, client, inbox,
                                                                    monkeypatch):
    monkeypatch.setattr(SandboxDelivery, "buyer_code",
                        lambda self, order: f"VC-{order.quantity}-<b>")
    order = place_order(client, email=BUYER)
    pay(app, order)
    worker.deliver_once(app)
    text, html = parts(inbox.received()[-1])
    assert "Your code for 70 coins: VC-70-<b>" in text
    assert "VC-70-&lt;b&gt;" in html and "VC-70-<b>" not in html
    assert "were added" not in text


def test_backend_failing_to_give_its_code_delays_the_receipt(app, client, inbox, monkeypatch):
    """Better late than a "delivered" e-mail without the code the buyer paid for."""
    answers = [RuntimeError("voucher store unreachable"), "VC-42"]

    def buyer_code(self, order):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(SandboxDelivery, "buyer_code", buyer_code)
    order = place_order(client, email=BUYER)
    pay(app, order)
    worker.deliver_once(app)
    assert kinds(inbox) == ["payment received"]
    assert row(order, "delivered").last_error == "RuntimeError: voucher store unreachable"
    make_due(order)
    housekeeping(app)
    assert kinds(inbox) == ["payment received", "delivered"]
    assert "Your code for 70 coins: VC-42" in parts(inbox.received()[1])[0]


def test_amounts_follow_the_order_locale(app, client, inbox):
    order = place_order(client, email=BUYER, coins=700)
    Order.update(locale="de").where(Order.id == order.id).execute()
    pay(app, order)
    text, html = parts(inbox.received()[0])
    assert order.total.format("de") == "9,38\xa0$"
    assert "9,38\xa0$" in text and "9,38\xa0$" in html and "$9.38" not in text


def test_problem_after_payment_gets_a_notice_then_refund_gets_one(app, client, inbox):
    order = place_order(client, email=BUYER)
    pay(app, order)
    with app.app_context():
        orders.mark_delivery_failed(order, "the account is banned", actor="operator")
    assert refund(app, order) == "applied"
    assert kinds(inbox) == ["payment received", "we are looking into your order", "refunded"]
    notice, refunded = (parts(message)[0] for message in inbox.received()[1:])
    assert "You do not need to pay again" in notice
    assert "banned" not in notice  # the operator's reason stays with the operator
    assert f"Your payment of {order.total.format('en')} for this order was refunded" in refunded


def test_unpaid_orders_get_nothing(app, client, inbox):
    expired = place_order(client, email=BUYER)
    Order.update(expires_at=utcnow() - timedelta(seconds=1)).where(
        Order.id == expired.id).execute()
    with app.app_context():
        assert orders.expire_overdue() == 1
    assert ReceiptMail.select().count() == 0 and inbox.messages == []


def test_payment_of_the_wrong_amount_gets_the_notice(app, client, inbox):
    order = place_order(client, email=BUYER)
    payment = Payment.get(Payment.order == order.id)
    event = PaymentEvent(event_id="evt_short", kind="succeeded", payment_ref=payment.provider_ref,
                         amount=Money(payment.amount - 1, payment.currency))
    with app.app_context():
        orders.apply_payment_event("sandbox", event)
    assert Order.get_by_id(order.id).status == orders.NEEDS_ATTENTION
    assert kinds(inbox) == ["we are looking into your order"]


def test_no_email_on_the_order_no_mail(app, client, inbox):
    order = place_order(client)
    pay(app, order)
    worker.deliver_once(app)
    assert Order.get_by_id(order.id).status == orders.DELIVERED
    assert ReceiptMail.select().count() == 0 and inbox.messages == []


def test_mail_switched_off_records_nothing(app, client, inbox):
    app.config["SMTP_HOST"] = None
    order = place_order(client, email=BUYER)
    pay(app, order)
    worker.deliver_once(app)
    housekeeping(app)
    assert ReceiptMail.select().count() == 0 and inbox.messages == []


def test_link_from_the_request_without_public_url(app, client, inbox):
    """The sandbox webhook, through the web: the link takes the request's host."""
    app.config["PUBLIC_URL"] = None
    order = place_order(client, email=BUYER)
    body = sandbox_event(order)
    response = client.post("/webhooks/sandbox", data=body, headers=signed_headers(body))
    assert response.status_code == 200
    text, html = parts(inbox.received()[0])
    assert f"http://localhost/orders/{order.public_id}" in text
    assert f'href="http://localhost/orders/{order.public_id}"' in html


def test_no_link_outside_a_request_without_public_url(app, client, inbox):
    app.config["PUBLIC_URL"] = None
    order = place_order(client, email=BUYER)
    pay(app, order)
    text, html = parts(inbox.received()[0])
    assert "/orders/" not in text and "href" not in html
    assert row(order, "paid").link is None


def test_html_part_escapes_what_the_buyer_and_backends_said(app, client, inbox):
    order = place_order(client, email=BUYER)
    (Order.update(account_nickname="<script>alert(1)</script>",
                  account_id='x"><img src=x onerror=alert(1)>')
     .where(Order.id == order.id).execute())
    pay(app, order)
    text, html = parts(inbox.received()[0])
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "x&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "(<script>alert(1)</script>)" in text  # plain text is shown as text
    # self-contained: inline styles only, and the one link is the order page
    assert "<style" not in html and "<link" not in html and "src=" not in html.replace(
        "img src=x", "")
    assert re.findall(r'(?:href|src)="([^"]*)"', html) == [
        f"https://coins.example/orders/{order.public_id}"]


# --- exactly once ----------------------------------------------------------------------


def test_replays_and_repeated_broadcasts_send_once(app, client, inbox):
    order = place_order(client, email=BUYER)
    assert pay(app, order) == "applied"
    assert pay(app, order) == "duplicate"
    assert pay(app, order, event_id="evt_other_id") == "ignored"
    with app.app_context():
        registry = app.extensions["topup"]
        for _ in range(3):
            registry.broadcast_status_changed(Order.get_by_id(order.id), "awaiting_payment", "paid")
    # a retried delivery passes through paid again: still no second receipt
    with app.app_context():
        orders.mark_delivery_failed(order, "try again", actor="operator")
        orders.retry_delivery(Order.get_by_id(order.id), actor="operator")
    housekeeping(app)
    assert kinds(inbox) == ["payment received", "we are looking into your order"]
    assert row(order, "paid").attempts == 1
    assert not plugin_problems()


def test_concurrent_broadcasts_send_one_mail(app, client, inbox):
    order = place_order(client, email=BUYER)
    app.config["SMTP_HOST"] = None  # paid without a receipt, to broadcast it ourselves
    pay(app, order)
    app.config["SMTP_HOST"] = "127.0.0.1"
    inbox.delay = 0.5  # the first sender is still talking to the server when the rest arrive
    start = threading.Barrier(4)

    def broadcast():
        with app.app_context():
            start.wait()
            app.extensions["topup"].broadcast_status_changed(
                Order.get_by_id(order.id), "awaiting_payment", "paid")

    def sweep():
        with app.app_context():
            start.wait()
            app.extensions["topup"].pm.hook.housekeeping()

    threads = [threading.Thread(target=target)
               for target in (broadcast, broadcast, broadcast, sweep)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert len(inbox.messages) == 1
    sent = row(order, "paid")
    assert sent.attempts == 1 and sent.sent_at is not None
    assert not plugin_problems()


# --- failures and retries ------------------------------------------------------------------


def test_server_down_then_housekeeping_sends_once(app, client, smtp, caplog):
    app.config.update(SMTP_USERNAME="shop", SMTP_PASSWORD=PASSWORD)
    caplog.set_level(logging.DEBUG)
    order = place_order(client, email=BUYER)
    assert pay(app, order) == "applied"  # the payment stands; its receipt waits
    failed = row(order, "paid")
    assert failed.sent_at is None and failed.attempts == 1 and failed.sending_until is None
    assert "ConnectionRefusedError" in failed.last_error
    assert failed.next_attempt_at > utcnow() + timedelta(seconds=50)  # backing off
    assert "could not send the paid e-mail" in caplog.text
    app.config["SMTP_USERNAME"] = None  # the loopback server does not do AUTH

    smtp.start()
    housekeeping(app)  # not due yet
    assert smtp.messages == [] and row(order, "paid").attempts == 1
    make_due(order)
    housekeeping(app)
    housekeeping(app)
    [message] = smtp.received()
    assert "payment received" in message["Subject"]
    sent = row(order, "paid")
    assert (sent.attempts, sent.last_error) == (2, None) and sent.sent_at is not None
    assert PASSWORD not in caplog.text and PASSWORD not in failed.last_error


def test_gives_up_after_max_attempts(app, client, smtp, caplog):
    app.config["PLUGINS"] = {**app.config["PLUGINS"],
                             "receipts": {"max_attempts": 3, "retry_base_seconds": 0}}
    order = place_order(client, email=BUYER)
    pay(app, order)
    for _ in range(4):
        housekeeping(app)
    failed = row(order, "paid")
    assert failed.attempts == 3 and failed.sent_at is None
    gave_up = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(gave_up) == 1 and "gave up on the paid e-mail" in gave_up[0].getMessage()
    smtp.start()
    housekeeping(app)
    assert smtp.messages == []


def test_settings_from_the_environment_are_read_like_other_plugins(app, client, smtp,
                                                                    monkeypatch):
    """{"$env": NAME} works here too; the environment's text is a number."""
    monkeypatch.setenv("RECEIPTS_TEST_MAX_ATTEMPTS", "2")
    app.config["PLUGINS"] = {**app.config["PLUGINS"], "receipts": {
        "max_attempts": {"$env": "RECEIPTS_TEST_MAX_ATTEMPTS"}, "retry_base_seconds": 0}}
    with app.app_context():
        assert outbox.settings() == {**outbox.DEFAULTS, "max_attempts": 2,
                                     "retry_base_seconds": 0}
    order = place_order(client, email=BUYER)
    pay(app, order)
    for _ in range(3):
        housekeeping(app)
    assert row(order, "paid").attempts == 2 and row(order, "paid").sent_at is None


def test_a_setting_that_is_not_a_number_says_which(app, monkeypatch):
    monkeypatch.setenv("RECEIPTS_TEST_BATCH", "twenty")
    app.config["PLUGINS"] = {**app.config["PLUGINS"],
                             "receipts": {"batch": {"$env": "RECEIPTS_TEST_BATCH"}}}
    with app.app_context(), pytest.raises(ValueError, match="receipts batch must be a whole"):
        outbox.settings()


def test_one_failure_stops_the_sweep(app, client, smtp):
    """A down server costs a sweep one timeout, not one per waiting receipt."""
    placed = [place_order(client, email=BUYER, account=f"@buyer_{index}") for index in range(3)]
    for order in placed:
        pay(app, order)
        make_due(order)
    housekeeping(app)
    assert sorted(ReceiptMail.select(ReceiptMail.attempts).tuples()) == [(1,), (1,), (2,)]
    smtp.start()
    for order in placed:
        make_due(order)
    housekeeping(app)
    assert len(smtp.messages) == 3


def test_stale_notice_is_not_sent(app, client, smtp):
    """The server was down when the order needed a look; by the time it is
    back the operator delivered it, so "we are looking into it" would be false."""
    order = place_order(client, email=BUYER)
    pay(app, order)
    with app.app_context():
        orders.mark_delivery_failed(order, "backend down", actor="operator")
    smtp.start()
    with app.app_context():
        orders.mark_delivered(Order.get_by_id(order.id), "manual-1", actor="operator")
    make_due(order)
    housekeeping(app)
    assert kinds(smtp) == ["delivered", "payment received"]
    skipped = row(order, "needs_attention")
    assert skipped.sent_at is None and skipped.last_error == "skipped: the order is now delivered"
    housekeeping(app)
    assert len(smtp.messages) == 2


def test_message_id_is_stable_per_order_and_kind(app, client, inbox):
    order = place_order(client, email=BUYER)
    pay(app, order)
    message = inbox.received()[0]
    with app.app_context():
        assert message["Message-ID"] == outbox.message_id(row(order, "paid"))
    assert re.fullmatch(r"<receipt\.paid\.[0-9a-f]{32}@coins\.example>", message["Message-ID"])
    assert order.public_id not in message["Message-ID"]
