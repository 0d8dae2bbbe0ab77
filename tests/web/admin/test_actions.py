"""The operator's actions on an order page: each goes through topup.orders
(mark_paid, cancel, refund are new there), names the operator in the
timeline, and a refusal comes back as 422 with its message."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from topup import orders
from topup.models import Delivery, OrderEvent, Payment, WebhookEvent, utcnow
from topup.money import Money
from topup.payments import PaymentEvent

from tests.web.admin.conftest import OPERATOR, fresh, pay, post


def act(client, order, action, **data):
    return post(client, f"/admin/orders/{order.public_id}/{action}", data)


def done(response, order, status):
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"] == f"/admin/orders/{order.public_id}"
    assert fresh(order).status == status


def refused(response, message):
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page.replace("&#39;", "'")
    return page


def trail(order) -> list[tuple]:
    return [(e.from_status, e.to_status, e.actor) for e in OrderEvent.select()
            .where(OrderEvent.order == order.id, OrderEvent.kind == "status")
            .order_by(OrderEvent.id)]


def payment(order) -> Payment:
    return Payment.get(Payment.order == order.id)


def offered(client, order) -> list[str]:
    page = client.get(f"/admin/orders/{order.public_id}").get_data(as_text=True)
    return re.findall(r'<form class="action ([a-z-]+)"', page)


def expire(app, order):
    from topup.models import Order

    Order.update(expires_at=utcnow() - timedelta(minutes=1)).where(Order.id == order.id).execute()
    with app.app_context():
        assert orders.expire_overdue() == 1
    return fresh(order)


# --- mark paid -----------------------------------------------------------------------------


def test_mark_paid_delivers_an_unpaid_order(operator_client, placed):
    assert offered(operator_client, placed) == ["mark-paid", "cancel"]
    response = act(operator_client, placed, "mark-paid", reference="  BANK-2024-777 ")
    done(response, placed, "paid")
    assert payment(placed).status == "succeeded"
    delivery = Delivery.get(Delivery.order == placed.id)
    assert (delivery.status, delivery.backend) == ("pending", "sandbox")
    assert trail(placed)[-1] == ("awaiting_payment", "paid", OPERATOR)
    last = (OrderEvent.select().where(OrderEvent.order == placed.id)
            .order_by(OrderEvent.id.desc()).get())
    assert last.message == "Marked paid by hand, bank reference BANK-2024-777"
    page = operator_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Done: the order is now paid." in page and "BANK-2024-777" in page


def test_money_for_an_expired_order_goes_through_needs_attention(app, operator_client, placed):
    expired = expire(app, placed)
    assert expired.status == "expired" and payment(placed).status == "expired"
    assert offered(operator_client, expired) == ["mark-paid"]
    done(act(operator_client, expired, "mark-paid", reference="PIX-1"), placed, "paid")
    assert trail(placed)[-2:] == [("expired", "needs_attention", OPERATOR),
                                  ("needs_attention", "paid", OPERATOR)]
    assert payment(placed).status == "succeeded"
    assert Delivery.select().where(Delivery.order == placed.id).count() == 1


def test_mark_paid_refusals(operator_client, placed, app):
    refused(act(operator_client, placed, "mark-paid", reference="  "),
            "Give the bank reference of the money you received.")
    assert fresh(placed).status == "awaiting_payment"
    paid = pay(app, placed)
    refused(act(operator_client, paid, "mark-paid", reference="BANK-1"),
            "This order was marked paid already")
    assert Delivery.select().where(Delivery.order == placed.id).count() == 1


# --- delivery --------------------------------------------------------------------------------


def test_mark_delivered_by_hand(operator_client, paid):
    assert offered(operator_client, paid) == ["delivered", "failed", "refund"]
    done(act(operator_client, paid, "delivered", reference="reseller #42", note="via app"),
         paid, "delivered")
    delivery = Delivery.get(Delivery.order == paid.id)
    assert (delivery.status, delivery.reference) == ("done", "reseller #42")
    assert trail(paid)[-2:] == [("paid", "delivering", OPERATOR),
                                ("delivering", "delivered", OPERATOR)]
    assert OrderEvent.select().where(
        OrderEvent.message == "Delivered by hand, reference reseller #42: via app").exists()
    assert offered(operator_client, paid) == ["refund"]


def test_mark_failed_then_retry(operator_client, paid):
    done(act(operator_client, paid, "failed", reason="account banned"), paid, "needs_attention")
    delivery = Delivery.get(Delivery.order == paid.id)
    assert (delivery.status, delivery.last_error) == ("failed", "account banned")
    assert trail(paid)[-1] == ("paid", "needs_attention", OPERATOR)
    assert offered(operator_client, paid) == ["retry", "delivered", "refund"]
    done(act(operator_client, paid, "retry"), paid, "paid")
    delivery = Delivery.get(Delivery.order == paid.id)
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 0, None)
    assert trail(paid)[-1] == ("needs_attention", "paid", OPERATOR)


def test_delivery_actions_refused_for_an_unpaid_order(operator_client, placed):
    refused(act(operator_client, placed, "delivered", reference="x"),
            "An order that is awaiting payment cannot be marked delivered.")
    refused(act(operator_client, placed, "failed", reason="x"),
            "An order that is awaiting payment is not being delivered.")
    refused(act(operator_client, placed, "retry"),
            "Only a paid order whose delivery failed can be delivered again.")
    assert fresh(placed).status == "awaiting_payment"
    assert trail(placed) == [(None, "awaiting_payment", "buyer")]


def test_a_refused_form_keeps_what_was_typed(operator_client, paid):
    page = refused(act(operator_client, paid, "delivered", reference="", note="my note"),
                   "Give the delivery")
    assert 'value="my note"' in page and 'aria-invalid="true"' in page


def test_an_unknown_action_is_a_404(operator_client, placed):
    assert act(operator_client, placed, "explode").status_code == 404


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_an_unpaid_order(operator_client, placed):
    refused(act(operator_client, placed, "cancel", reason=""), "Say why the order is canceled.")
    done(act(operator_client, placed, "cancel", reason="duplicate order"), placed, "canceled")
    assert payment(placed).status == "canceled"
    assert trail(placed)[-1] == ("awaiting_payment", "canceled", OPERATOR)
    assert OrderEvent.select().where(OrderEvent.message == "Canceled: duplicate order").exists()
    assert offered(operator_client, placed) == ["mark-paid"]


def test_cancel_refuses_paid_orders(operator_client, paid):
    refused(act(operator_client, paid, "cancel", reason="x"),
            "An order that is paid cannot be canceled.")
    assert fresh(paid).status == "paid"


def test_money_received_is_refunded_not_canceled(app, operator_client, placed):
    expired = expire(app, placed)
    pay(app, expired)  # the money arrived after all: the order needs attention
    assert fresh(placed).status == "needs_attention"
    assert "cancel" not in offered(operator_client, placed)
    refused(act(operator_client, placed, "cancel", reason="x"),
            "Money was received for this order: refund it instead.")


def test_a_payment_after_cancel_needs_attention_then_can_be_marked_paid(app, operator_client,
                                                                      placed):
    done(act(operator_client, placed, "cancel", reason="buyer asked"), placed, "canceled")
    pay(app, placed)
    assert fresh(placed).status == "needs_attention"
    done(act(operator_client, placed, "mark-paid", reference="webhook came late"), placed, "paid")


# --- refund ----------------------------------------------------------------------------------


def test_refund_by_hand_when_the_method_cannot_refund(operator_client, paid):
    page = operator_client.get(f"/admin/orders/{paid.public_id}").get_data(as_text=True)
    assert "send the money back yourself" in page
    refused(act(operator_client, paid, "refund", reason=" "), "Say why the order is refunded.")
    done(act(operator_client, paid, "refund", reason="wrong account"), paid, "refunded")
    assert payment(paid).status == "refunded"
    assert Delivery.get(Delivery.order == paid.id).status == "canceled"  # never delivered now
    assert trail(paid)[-1] == ("paid", "refunded", OPERATOR)
    assert OrderEvent.select().where(
        OrderEvent.message == "Refunded by hand: wrong account").exists()
    assert offered(operator_client, paid) == []


def test_refund_refused_without_money(operator_client, placed):
    refused(act(operator_client, placed, "refund", reason="x"),
            "An order that is awaiting payment cannot be refunded.")


@pytest.fixture
def refunding_sandbox(app, monkeypatch):
    """The sandbox provider, able to refund: records the calls, answers with an event."""
    provider = app.extensions["topup"].providers["sandbox"]
    calls = []

    def refund(payment):
        calls.append(payment.provider_ref)
        return PaymentEvent(event_id=f"re_{payment.provider_ref}", kind="refunded",
                            payment_ref=payment.provider_ref,
                            amount=Money(payment.amount, payment.currency))

    monkeypatch.setattr(provider, "supports_refund", True, raising=False)
    monkeypatch.setattr(provider, "refund", refund, raising=False)
    return calls


def test_refund_through_the_provider(operator_client, paid, refunding_sandbox):
    page = operator_client.get(f"/admin/orders/{paid.public_id}").get_data(as_text=True)
    assert "Sandbox (test payment) is asked to refund the payment." in page
    done(act(operator_client, paid, "refund", reason="buyer asked"), paid, "refunded")
    ref = payment(paid).provider_ref
    assert refunding_sandbox == [ref]
    assert payment(paid).status == "refunded"
    assert WebhookEvent.get(WebhookEvent.event_id == f"re_{ref}").outcome == "applied"
    asked = OrderEvent.get(OrderEvent.order == paid.id, OrderEvent.kind == "refund")
    assert (asked.actor, asked.message) == (OPERATOR, "Refund asked of Sandbox (test payment): "
                                                      "buyer asked")
    assert trail(paid)[-1] == ("paid", "refunded", "system")  # the provider's answer, applied
    assert Delivery.get(Delivery.order == paid.id).status == "canceled"


def test_a_provider_that_cannot_refund_changes_nothing(app, operator_client, paid, monkeypatch):
    provider = app.extensions["topup"].providers["sandbox"]

    def decline(payment):
        raise ValueError("charge already disputed")

    monkeypatch.setattr(provider, "supports_refund", True, raising=False)
    monkeypatch.setattr(provider, "refund", decline, raising=False)
    refused(act(operator_client, paid, "refund", reason="buyer asked"),
            "Sandbox (test payment) could not refund: ValueError: charge already disputed. "
            "Nothing was changed.")
    assert fresh(paid).status == "paid" and payment(paid).status == "succeeded"
    events = [(e.actor, e.message) for e in OrderEvent.select()
              .where(OrderEvent.order == paid.id, OrderEvent.kind == "refund")
              .order_by(OrderEvent.id)]
    assert events == [(OPERATOR, "Refund asked of Sandbox (test payment): buyer asked"),
                      (OPERATOR, "Sandbox (test payment) could not refund: ValueError: "
                                 "charge already disputed")]


def test_a_refund_the_provider_does_not_confirm_is_reported(app, operator_client, paid,
                                                            monkeypatch):
    provider = app.extensions["topup"].providers["sandbox"]
    monkeypatch.setattr(provider, "supports_refund", True, raising=False)
    monkeypatch.setattr(provider, "refund", lambda p: PaymentEvent(
        event_id="re_pending", kind="pending", payment_ref=p.provider_ref), raising=False)
    refused(act(operator_client, paid, "refund", reason="x"),
            "Sandbox (test payment) answered the refund with pending (applied); "
            "the order is still paid")
    assert fresh(paid).status == "paid"


# --- the functions themselves ------------------------------------------------------------------


def test_operator_functions_refuse_blank_input(app, placed):
    with app.app_context():
        for call in (lambda: orders.mark_paid(placed, "", OPERATOR),
                     lambda: orders.cancel(placed, "   ", OPERATOR),
                     lambda: orders.refund(placed, OPERATOR, "")):
            with pytest.raises(orders.OrderRefused):
                call()
    assert fresh(placed).status == "awaiting_payment"


def test_mark_paid_respects_the_transitions(app, paid):
    """Delivered and refunded orders can never be paid again."""
    with app.app_context():
        orders.mark_delivered(paid, "ref", OPERATOR)
        with pytest.raises(orders.OrderRefused):
            orders.mark_paid(paid, "BANK", OPERATOR)
        orders.refund(paid, OPERATOR, "changed mind")
        with pytest.raises(orders.OrderRefused, match="cannot be marked paid|marked paid already"):
            orders.mark_paid(paid, "BANK", OPERATOR)
        with pytest.raises(orders.OrderRefused, match="cannot be refunded"):
            orders.refund(paid, OPERATOR, "again")
    assert fresh(paid).status == "refunded"
