"""The order state machine: the ONLY place that changes Order, Payment and Delivery status.

    awaiting_payment -> paid -> delivering -> delivered
    awaiting_payment -> expired | failed | canceled
    any open state   -> needs_attention (a person must look) -> ...
    paid | delivering | delivered | needs_attention -> refunded

Every change runs in one transaction that first locks the order row (SQLite:
BEGIN IMMEDIATE; Postgres: SELECT ... FOR UPDATE), then compare-and-sets the
status (UPDATE ... WHERE status = old; one row or nothing), writes an
OrderEvent, and broadcasts `order_status_changed` after commit.
"""
from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from flask import current_app
from flask_babel import gettext
from peewee import IntegrityError

from topup.db import Prepared, database, is_sqlite
from topup.delivery import DeliveryResult
from topup import pricing
from topup.models import (Delivery, Order, OrderEvent, Package, Payment, PromoCode, PromoUse,
                          WebhookEvent, utcnow)
from topup.money import Money
from topup.payments import PaymentEvent

log = logging.getLogger(__name__)
# On the path of every Buy: building it cost a tenth of one (see topup.db.Prepared).
_PAYMENT_STARTED = Prepared(lambda ref, action, now, payment: (
    Payment.update(provider_ref=ref, action=action, status="started", updated_at=now)
    .where(Payment.id == payment, Payment.status == "created")))

AWAITING_PAYMENT = "awaiting_payment"
PAID = "paid"
DELIVERING = "delivering"
DELIVERED = "delivered"
EXPIRED = "expired"
FAILED = "failed"
NEEDS_ATTENTION = "needs_attention"
REFUNDED = "refunded"
CANCELED = "canceled"

TRANSITIONS = {
    AWAITING_PAYMENT: {PAID, EXPIRED, FAILED, CANCELED, NEEDS_ATTENTION},
    PAID: {DELIVERING, NEEDS_ATTENTION, REFUNDED},
    DELIVERING: {DELIVERED, NEEDS_ATTENTION, REFUNDED},
    NEEDS_ATTENTION: {PAID, DELIVERED, REFUNDED, CANCELED},  # PAID: deliver again
    DELIVERED: {REFUNDED},
    EXPIRED: {NEEDS_ATTENTION},  # money arrived after all
    FAILED: {NEEDS_ATTENTION},
    CANCELED: {NEEDS_ATTENTION},
    REFUNDED: set(),
}
# Nothing more will happen without a person: the buyer's page stops watching.
FINAL = frozenset({DELIVERED, EXPIRED, FAILED, REFUNDED, CANCELED})
# Ends of an order that was never paid: a promo code's use is given back.
UNPAID_ENDS = frozenset({EXPIRED, FAILED, CANCELED})


class OrderRefused(Exception):
    """The buyer's request cannot become an order; the message says why, for people."""


# --- the one primitive ------------------------------------------------------


def _locked(order_id: int) -> Order:
    """Re-read the order inside the current transaction, holding its row lock.

    Lock order, everywhere: delivery row (if any), then order row, then inserts.
    FOR NO KEY UPDATE, because we never change keys and must not conflict with
    the KEY SHARE locks that inserts referencing the order take.
    """
    query = Order.select().where(Order.id == order_id)
    if not is_sqlite():  # SQLite's BEGIN IMMEDIATE already holds the only write lock
        query = query.for_update("FOR NO KEY UPDATE")
    return query.get()


def _event(order: Order, kind: str, message: str | None = None, *, old=None, new=None,
           actor: str = "system") -> None:
    OrderEvent.create(order=order, kind=kind, from_status=old, to_status=new,
                      message=message, actor=actor)


def _transition(order: Order, new: str, message: str | None = None, actor: str = "system") -> bool:
    """Compare-and-set order.status to new. False (and no change) when another
    writer got there first; must run inside a transaction."""
    old = order.status
    if new not in TRANSITIONS[old]:
        raise ValueError(f"order {order.public_id}: {old} -> {new} is not a transition")
    changed = (Order.update(status=new, updated_at=utcnow())
               .where(Order.id == order.id, Order.status == old)
               .execute())
    if changed != 1:
        return False
    order.status = new
    _event(order, "status", message, old=old, new=new, actor=actor)
    if order.promo_code and old == AWAITING_PAYMENT and new in UNPAID_ENDS:
        _give_back_promo_use(order)
    elif order.promo_code and old in UNPAID_ENDS and new == NEEDS_ATTENTION:
        _count_promo_use_again(order)
    registry = current_app.extensions["topup"]
    database.after_commit(lambda: registry.broadcast_status_changed(order, old, new))
    return True


def _queue_delivery(order: Order) -> None:
    """Insert the outbox row (inside the paid transition's transaction), and
    once committed wake this process's worker threads, so delivery starts now
    instead of at their next poll."""
    Delivery.create(order=order, backend=order.product.delivery_backend)
    wake = current_app.extensions.get("topup.worker_wake")
    if wake is not None:
        database.after_commit(wake.set)


def _set_payment_status(payment: Payment, new: str, error: str | None = None) -> None:
    fields = {"status": new, "updated_at": utcnow()}
    if error is not None:
        fields["error"] = error
    Payment.update(**fields).where(Payment.id == payment.id).execute()
    payment.status = new


# --- checkout ---------------------------------------------------------------


def create_order(*, product, package, country: str, currency: str, account_id: str,
                 account_nickname: str | None, payment_method: str, email: str | None,
                 locale: str, idempotency_key: str, quantity: int | None = None,
                 promo_code: str | None = None) -> tuple[Order, bool]:
    """Create the order and its first Payment, priced by the server through
    topup.pricing (the package's price, or quantity x the product's rate for
    its hidden custom package; minus promo_code's discount; plus the method's
    fee on the discounted price), open for the method's payment window.

    A promo code is re-checked here and its use counted in the order's
    transaction: a conditional UPDATE (uses < max_uses) that takes the code's
    row lock, then the per-e-mail count, then a PromoUse row; so a race of
    buyers never uses it more than its limits allow.

    Returns (order, created). The same idempotency key with the same choices
    returns the existing order (a double tap); with other choices it is refused.
    """
    promo_code = pricing.normalise_code(promo_code) or None
    if not package.is_custom:
        quantity = package.quantity
    choices = dict(product_id=product.id, package_id=package.id, country=country,
                   currency=currency, account_id=account_id, payment_method=payment_method,
                   email=email or None, quantity=quantity, promo_code=promo_code)
    existing = Order.by_idempotency_key(idempotency_key)
    if existing is not None:
        return _resubmitted(existing, choices), False
    price = _price(product, package, currency, quantity)
    provider = current_app.extensions["topup"].providers.get(payment_method)
    if provider is None:
        raise OrderRefused(gettext("This payment method is not available. Please choose another."))
    promo = None
    try:
        if promo_code:
            promo = pricing.find_promo(promo_code)
            pricing.check_promo(promo, product=product, country=country, currency=currency,
                                email=email, now=utcnow())
    except pricing.PricingError as error:
        raise OrderRefused(str(error)) from None
    priced = pricing.quote(quantity=quantity, price=price, promo=promo, provider=provider)
    ttl = provider.expiry_seconds or current_app.config["ORDER_TTL_SECONDS"]
    try:
        with database.atomic():
            if promo is not None:
                _count_promo_use(promo, email)
            order = Order.create(
                public_id=_new_public_id(), idempotency_key=idempotency_key,
                account_nickname=account_nickname, amount=priced.total.amount,
                fee=priced.fee.amount, discount=priced.discount.amount, locale=locale,
                status=AWAITING_PAYMENT, expires_at=utcnow() + timedelta(seconds=ttl), **choices)
            if promo is not None:
                PromoUse.create(promo=promo, order=order, email=(email or "").lower() or None)
            Payment.create(order=order, provider=payment_method, amount=order.amount,
                           currency=currency)
            _event(order, "status", "Order placed" + (f", promo code {promo.code}: "
                                                      f"-{priced.discount.amount} {currency}"
                                                      if promo is not None else ""),
                   new=AWAITING_PAYMENT, actor="buyer")
        return order, True
    except IntegrityError:  # the same key, submitted twice at once: the other request won
        existing = Order.by_idempotency_key(idempotency_key)
        if existing is None:
            raise
    return _resubmitted(existing, choices), False


def _price(product, package, currency: str, quantity: int | None) -> Money:
    """The price before any discount: the package's, or the custom amount's."""
    if package.is_custom:
        offer = pricing.custom_offer(product, currency)
        if offer is None or package.product_id != product.id:
            raise OrderRefused(gettext("Custom amounts are not sold in that currency. "
                                       "Please choose a package."))
        low, high, per_thousand = offer
        try:
            if quantity is None or not low <= quantity <= high:
                raise pricing.PricingError(gettext(
                    "Choose an amount from %(low)s to %(high)s.", low=f"{low:,}", high=f"{high:,}"))
            return pricing.custom_price(quantity, per_thousand, currency)
        except pricing.PricingError as error:
            raise OrderRefused(str(error)) from None
    priced = Package.priced(product, currency, package.id)
    if priced is None:
        raise OrderRefused(gettext("This package is not sold in that currency. "
                                   "Please choose another."))
    return priced.price.money


def _count_promo_use(promo, email: str | None) -> None:
    """Count one use, inside the order's transaction. The conditional UPDATE is
    atomic on every database and holds the code's row lock until commit, so the
    per-e-mail count after it sees every committed use of the code."""
    counted = (PromoCode.update(uses=PromoCode.uses + 1)
               .where(PromoCode.id == promo.id, PromoCode.enabled,
                      PromoCode.max_uses.is_null() | (PromoCode.uses < PromoCode.max_uses))
               .execute())
    if counted != 1:
        raise OrderRefused(gettext("This promo code has been used up."))
    if promo.max_uses_per_email is not None and (
            not email or pricing.uses_by(promo, email) >= promo.max_uses_per_email):
        raise OrderRefused(gettext("You have already used this promo code.") if email else
                           gettext("Enter your e-mail address to use this promo code."))


def _give_back_promo_use(order: Order) -> None:
    """An order never paid gives its promo use back (inside its transition), so
    abandoned checkouts cannot use up a code with a limit."""
    use = PromoUse.get_or_none(PromoUse.order == order.id)
    if use is None:
        return
    use.delete_instance()
    (PromoCode.update(uses=PromoCode.uses - 1)
     .where(PromoCode.id == use.promo_id, PromoCode.uses > 0).execute())


def _count_promo_use_again(order: Order) -> None:
    """Money came after all for an order that gave its use back: it was paid at
    the discounted price, so the use counts again, over the limit if need be."""
    promo = PromoCode.get_or_none(PromoCode.code == order.promo_code)
    if promo is None or PromoUse.get_or_none(PromoUse.order == order.id) is not None:
        return
    PromoCode.update(uses=PromoCode.uses + 1).where(PromoCode.id == promo.id).execute()
    PromoUse.create(promo=promo, order=order, email=(order.email or "").lower() or None)


def _new_public_id() -> str:
    """128 random bits, URL-safe, starting with a letter or digit: an id that
    begins with "-" would be taken for a formula (or an option) elsewhere."""
    while True:
        candidate = secrets.token_urlsafe(16)
        if candidate[0].isalnum():
            return candidate


def _resubmitted(existing: Order, choices: dict) -> Order:
    """A key seen before: the same order for the same choices, else a refusal."""
    if any(getattr(existing, field) != value for field, value in choices.items()):
        raise OrderRefused(gettext("This form was already used for another order. "
                                   "Check your choices and press Buy again."))
    return existing


def start_payment(order: Order, provider, return_url: str) -> None:
    """Ask the provider how the buyer pays; keep its answer on the Payment.

    The provider is called outside any transaction (it may be slow). If it
    raises, the order fails and OrderRefused tells the buyer to choose again.
    """
    payment = order.latest_payment()
    try:
        action = provider.start(order, return_url=return_url)
    except Exception as exc:
        current_app.extensions["topup"].contain(provider.id, exc)
        with database.atomic():
            locked = _locked(order.id)
            _set_payment_status(payment, "failed", error=f"{type(exc).__name__}: {exc}")
            if locked.status == AWAITING_PAYMENT:
                _transition(locked, FAILED, f"{provider.name} could not start the payment")
        raise OrderRefused(gettext("%(method)s is not working right now. "
                                   "Please choose another payment method.",
                                   method=provider.name)) from exc
    # One statement: atomic by itself, no transaction around it.
    _PAYMENT_STARTED.execute(action.provider_ref, Payment.action.db_value(action.to_json()),
                             Payment.updated_at.db_value(utcnow()), payment.id)


# --- payment events (webhooks and re-fetches) -------------------------------


def apply_payment_event(provider_id: str, event: PaymentEvent) -> str:
    """Apply one verified provider event. Returns what happened, for the log:
    "duplicate", "unknown payment", "applied" or "ignored".

    The event id is recorded under a UNIQUE key in the same transaction as its
    effect, so a replay (or a race of replays) changes nothing. An event for a
    payment we do not know yet records nothing, so its retry can still apply.
    """
    payment = Payment.get_or_none(Payment.provider == provider_id,
                                  Payment.provider_ref == event.payment_ref)
    if payment is None:
        log.warning("%s event %s names unknown payment %r", provider_id, event.event_id,
                    event.payment_ref)
        return "unknown payment"
    with database.atomic():
        order = _locked(payment.order_id)
        try:
            with database.atomic():  # savepoint: a duplicate leaves the outer transaction usable
                WebhookEvent.create(provider=provider_id, event_id=event.event_id, order=order)
        except IntegrityError:
            return "duplicate"
        outcome = _apply(order, Payment.get_by_id(payment.id), event)
        (WebhookEvent.update(outcome=outcome)
         .where(WebhookEvent.provider == provider_id, WebhookEvent.event_id == event.event_id)
         .execute())
        return outcome


def _apply(order: Order, payment: Payment, event: PaymentEvent) -> str:
    if event.kind == "succeeded":
        if payment.status in ("succeeded", "refunded"):
            return "ignored"  # the same payment told twice under different event ids
        _set_payment_status(payment, "succeeded")
        mismatch = event.amount is not None and event.amount != payment.total
        if order.status == AWAITING_PAYMENT and not mismatch:
            _transition(order, PAID, f"Payment {payment.provider_ref} succeeded")
            _queue_delivery(order)
            return "applied"
        problem = (f"Paid {event.amount.amount} {event.amount.currency}, expected "
                   f"{payment.amount} {payment.currency}" if mismatch else
                   f"Payment {payment.provider_ref} succeeded after the order was {order.status}")
        if NEEDS_ATTENTION in TRANSITIONS[order.status]:
            _transition(order, NEEDS_ATTENTION, problem)
        else:
            _event(order, "payment", problem)
        return "applied"

    if event.kind in ("failed", "expired"):
        if payment.status not in ("created", "started", "pending"):
            return "ignored"  # e.g. a failure reported after the success
        _set_payment_status(payment, event.kind)
        if order.status == AWAITING_PAYMENT:
            _transition(order, FAILED if event.kind == "failed" else EXPIRED,
                        f"Payment {payment.provider_ref} {event.kind}")
        return "applied"

    if event.kind == "pending":
        if payment.status in ("created", "started"):
            _set_payment_status(payment, "pending")
        return "applied"

    # refunded
    if payment.status != "succeeded":
        return "ignored"
    _set_payment_status(payment, "refunded")
    if REFUNDED in TRANSITIONS[order.status]:
        _transition(order, REFUNDED, f"Payment {payment.provider_ref} refunded")
    return "applied"


def expire_overdue() -> int:
    """Close orders whose payment window passed. Returns how many."""
    expired = 0
    due = (Order.select(Order.id)
           .where(Order.status == AWAITING_PAYMENT, Order.expires_at < utcnow()))
    for (order_id,) in list(due.tuples()):  # read first: no write while a read is open
        with database.atomic():
            order = _locked(order_id)
            if order.status == AWAITING_PAYMENT and order.expires_at < utcnow():
                payment = order.latest_payment()
                if payment and payment.status in ("created", "started", "pending"):
                    _set_payment_status(payment, "expired")
                expired += _transition(order, EXPIRED, "Not paid in time")
    return expired


# --- delivery outbox ---------------------------------------------------------
#
# Delivery rows: pending (due to be delivered) -> working (leased to a worker)
# -> done | failed, or -> waiting (the backend accepted it and will confirm;
# the worker asks fetch_status while leased) -> done | failed | pending (again).

CLAIMABLE = ("pending", "working", "waiting")


def claim_delivery() -> Delivery | None:
    """Take the next due delivery for this worker, leased for DELIVERY_LEASE_SECONDS.

    A pending row is claimed to deliver (one attempt); a waiting row to ask the
    backend about it (no attempt). A lease that runs out (the worker died)
    makes the row due again; the backend's idempotency on order.public_id
    makes the second try safe. The lease's end is the claim's token.
    """
    lease = timedelta(seconds=current_app.config["DELIVERY_LEASE_SECONDS"])
    while True:
        now = utcnow()
        with database.atomic():
            query = (Delivery.select()
                     .where(Delivery.status.in_(CLAIMABLE),
                            Delivery.next_attempt_at <= now,
                            Delivery.lease_until.is_null() | (Delivery.lease_until < now))
                     .order_by(Delivery.next_attempt_at)
                     .limit(1))
            if not is_sqlite():
                query = query.for_update(skip_locked=True)
            delivery = query.first()
            if delivery is None:
                return None
            order = _locked(delivery.order_id)
            if order.status not in (PAID, DELIVERING):  # refunded or escalated meanwhile
                _update_delivery(delivery, "canceled")
                continue
            if delivery.status == "waiting":
                Delivery.update(lease_until=now + lease).where(Delivery.id == delivery.id).execute()
            else:
                (Delivery.update(status="working", attempts=Delivery.attempts + 1,
                                 lease_until=now + lease, updated_at=now)
                 .where(Delivery.id == delivery.id).execute())
            if order.status == PAID:
                _transition(order, DELIVERING)
            return Delivery.get_by_id(delivery.id)


def record_delivery_result(delivery: Delivery, result: DeliveryResult | None) -> None:
    """Record what the backend said for the claim `delivery` holds: the answer
    to deliver(), or to fetch_status() (None: no news) for a waiting row."""
    config = current_app.config
    now = utcnow()
    with database.atomic():
        current = Delivery.select().where(Delivery.id == delivery.id)
        current = (current if is_sqlite() else current.for_update("FOR NO KEY UPDATE")).get()
        order = _locked(delivery.order_id)
        if current.status != delivery.status or current.lease_until != delivery.lease_until:
            return  # our lease ran out and another worker took over; its answer counts
        checking = delivery.status == "waiting"
        age = (now - delivery.created_at).total_seconds()
        if result is None or (checking and result.status == "pending"):
            if age < config["DELIVERY_CONFIRM_WITHIN_SECONDS"]:
                _update_delivery(delivery, "waiting", next_attempt_at=now + _check_delay(age))
                return
            result = DeliveryResult("failed", message=f"{delivery.backend} did not confirm the "
                                    f"delivery within {_duration(age)}")
        if not checking or result.status != "retry":
            _event(order, "delivery", ("Check" if checking else f"Attempt {delivery.attempts}")
                   + f": {result.status}"
                   + (f" ({result.message})" if result.message else "")
                   + (f", reference {result.reference}" if result.reference else ""))
        if result.status == "delivered":
            _update_delivery(delivery, "done", reference=result.reference, last_error=None)
            if order.status == DELIVERING:
                _transition(order, DELIVERED, f"Delivered, reference {result.reference}"
                            if result.reference else "Delivered")
        elif result.status == "pending":
            _update_delivery(delivery, "waiting", reference=result.reference,
                             last_error=None, next_attempt_at=now + _check_delay(age))
        elif result.status == "failed" or delivery.attempts >= config["DELIVERY_MAX_ATTEMPTS"]:
            reason = result.message or result.status
            _update_delivery(delivery, "failed", last_error=reason)
            if order.status == DELIVERING:
                _transition(order, NEEDS_ATTENTION,
                            f"Delivery gave up after {delivery.attempts} attempt(s): {reason}")
        else:  # retry: deliver again later, backing off
            delay = min(config["DELIVERY_RETRY_BASE_SECONDS"] * 2 ** max(delivery.attempts - 1, 0),
                        config["DELIVERY_RETRY_MAX_SECONDS"])
            _update_delivery(delivery, "pending", last_error=result.message,
                             next_attempt_at=now + timedelta(seconds=delay))


def wake_delivery(order_public_id: str) -> bool:
    """A backend's callback says there is news about a waiting delivery: make it
    due now, so a worker asks fetch_status at once. True if one was waiting."""
    order_ids = Order.select(Order.id).where(Order.public_id == order_public_id)
    return bool(Delivery.update(next_attempt_at=utcnow())
                .where(Delivery.order.in_(order_ids), Delivery.status == "waiting")
                .execute())


def _check_delay(age: float) -> timedelta:
    """Ask a waiting backend often at first, then less: a tenth of the wait so far."""
    config = current_app.config
    return timedelta(seconds=min(max(age / 10, config["DELIVERY_CHECK_MIN_SECONDS"]),
                                 config["DELIVERY_RETRY_MAX_SECONDS"]))


def _duration(seconds: float) -> str:
    hours, minutes = int(seconds // 3600), int(seconds % 3600 // 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _update_delivery(delivery: Delivery, status: str, **fields) -> None:
    (Delivery.update(status=status, lease_until=None, updated_at=utcnow(), **fields)
     .where(Delivery.id == delivery.id).execute())


# --- operator actions ----------------------------------------------------------
# Each names the operator (actor) in the order's timeline.


def _locked_delivery(order: Order) -> tuple[Delivery | None, Order]:
    """Lock the order's delivery row, then the order (the global lock order)."""
    query = Delivery.select().where(Delivery.order == order.id)
    delivery = (query if is_sqlite() else query.for_update("FOR NO KEY UPDATE")).first()
    return delivery, _locked(order.id)


def mark_delivered(order: Order, reference: str, actor: str, note: str | None = None) -> Order:
    """The operator delivered by hand (manual fulfilment, or after a problem)."""
    reference = reference.strip()[:100]
    if not reference:
        raise OrderRefused("Give the delivery's reference (what you credited, or a note).")
    with database.atomic():
        delivery, order = _locked_delivery(order)
        if order.status not in (PAID, DELIVERING, NEEDS_ATTENTION):
            raise OrderRefused(f"An order that is {order.status.replace('_', ' ')} "
                               "cannot be marked delivered.")
        if delivery is not None:
            _update_delivery(delivery, "done", reference=reference, last_error=None)
        if order.status == PAID:
            _transition(order, DELIVERING, actor=actor)
        message = f"Delivered by hand, reference {reference}" + (f": {note}" if note else "")
        _transition(order, DELIVERED, message, actor=actor)
    return order


def mark_delivery_failed(order: Order, reason: str, actor: str) -> Order:
    """The operator could not deliver: the order waits for a decision (refund, retry)."""
    reason = reason.strip()[:500]
    if not reason:
        raise OrderRefused("Say why the delivery failed.")
    with database.atomic():
        delivery, order = _locked_delivery(order)
        if order.status not in (PAID, DELIVERING):
            raise OrderRefused(f"An order that is {order.status.replace('_', ' ')} "
                               "is not being delivered.")
        if delivery is not None:
            _update_delivery(delivery, "failed", last_error=reason)
        _transition(order, NEEDS_ATTENTION, f"Delivery failed: {reason}", actor=actor)
    return order


def retry_delivery(order: Order, actor: str) -> Order:
    """Deliver a needs-attention order again, from a fresh set of attempts."""
    with database.atomic():
        delivery, order = _locked_delivery(order)
        if order.status != NEEDS_ATTENTION or delivery is None or delivery.status == "done":
            raise OrderRefused("Only a paid order whose delivery failed can be delivered again.")
        _update_delivery(delivery, "pending", attempts=0, next_attempt_at=utcnow(),
                         last_error=None)
        _transition(order, PAID, "Delivery retried", actor=actor)
    return order


def delivery_queue(backend: str):
    """Deliveries a backend is waiting on a person for, oldest first."""
    return (Delivery.select(Delivery, Order).join(Order)
            .where(Delivery.backend == backend, Delivery.status == "waiting")
            .order_by(Delivery.created_at))


# --- operator actions: money -----------------------------------------------------
# Paying by hand, canceling and refunding. Like the delivery actions above, each
# names the operator (actor) in the order's timeline.

OPEN_PAYMENT = ("created", "started", "pending")


def _received_payment(order: Order) -> Payment | None:
    """The order's newest payment whose money arrived, if any."""
    return (Payment.select().where(Payment.order == order.id, Payment.status == "succeeded")
            .order_by(Payment.id.desc()).first())


def _stop_delivery(delivery: Delivery | None) -> None:
    """No delivery for an order that will not be delivered. A row a worker is
    working on is left alone: its answer is still recorded, truthfully."""
    if delivery is not None and delivery.status in ("pending", "waiting"):
        _update_delivery(delivery, "canceled")


def mark_paid(order: Order, reference: str, actor: str) -> Order:
    """The money arrived where no provider tells us (a bank transfer, a QR
    code): the operator saw it and gives the bank's reference; the order is
    delivered like one paid by webhook. An order already closed (expired,
    failed, canceled) goes through needs_attention, as TRANSITIONS say."""
    reference = reference.strip()[:100]
    if not reference:
        raise OrderRefused("Give the bank reference of the money you received.")
    with database.atomic():
        delivery, order = _locked_delivery(order)
        if delivery is not None:
            raise OrderRefused("This order was marked paid already: retry or mark its "
                               "delivery instead.")
        if PAID in TRANSITIONS[order.status]:
            via = []
        elif order.status in (EXPIRED, FAILED, CANCELED):
            via = [NEEDS_ATTENTION]
        else:
            raise OrderRefused(f"An order that is {order.status.replace('_', ' ')} "
                               "cannot be marked paid.")
        payment = order.latest_payment()
        if payment is None:  # every order gets one at checkout; heal a missing one
            payment = Payment.create(order=order, provider=order.payment_method,
                                     amount=order.amount, currency=order.currency)
        if payment.status == "refunded":
            raise OrderRefused("This order's payment was refunded: it cannot be marked paid.")
        if payment.status != "succeeded":
            _set_payment_status(payment, "succeeded")
        for step in via:
            _transition(order, step, f"Money arrived after the order was {order.status}",
                        actor=actor)
        _transition(order, PAID, f"Marked paid by hand, bank reference {reference}", actor=actor)
        _queue_delivery(order)
    return order


def cancel(order: Order, reason: str, actor: str) -> Order:
    """Close an order nobody will pay (a duplicate, the buyer changed their
    mind), or a needs-attention one no money came for. Money received is
    refunded instead, so no paid order is ever just closed."""
    reason = reason.strip()[:500]
    if not reason:
        raise OrderRefused("Say why the order is canceled.")
    with database.atomic():
        delivery, order = _locked_delivery(order)
        if order.status not in (AWAITING_PAYMENT, NEEDS_ATTENTION):
            raise OrderRefused(f"An order that is {order.status.replace('_', ' ')} "
                               "cannot be canceled.")
        if _received_payment(order) is not None:
            raise OrderRefused("Money was received for this order: refund it instead.")
        for payment in order.payments.where(Payment.status.in_(OPEN_PAYMENT)):
            _set_payment_status(payment, "canceled")
        _stop_delivery(delivery)
        _transition(order, CANCELED, f"Canceled: {reason}", actor=actor)
    return order


def refund(order: Order, actor: str, reason: str) -> Order:
    """Give the buyer's money back. A provider that can refund is asked to
    (outside any transaction: it may be slow) and its answer is applied like
    a webhook, so its own later webhook changes nothing; otherwise the
    operator sent the money back themselves and this records it."""
    reason = reason.strip()[:500]
    if not reason:
        raise OrderRefused("Say why the order is refunded.")
    registry = current_app.extensions["topup"]
    with database.atomic():
        delivery, locked = _locked_delivery(order)
        if REFUNDED not in TRANSITIONS[locked.status]:
            raise OrderRefused(f"An order that is {locked.status.replace('_', ' ')} "
                               "cannot be refunded.")
        payment = _received_payment(locked)
        if payment is None:
            raise OrderRefused("No money was received for this order: cancel it instead.")
        provider = registry.providers.get(payment.provider)
        if provider is None or not provider.supports_refund:
            _set_payment_status(payment, "refunded")
            _stop_delivery(delivery)
            _transition(locked, REFUNDED, f"Refunded by hand: {reason}", actor=actor)
            return locked
        _event(locked, "refund", f"Refund asked of {provider.name}: {reason}", actor=actor)
    try:
        answer = provider.refund(payment)
    except Exception as exc:  # declined or down: nothing changed, the operator is told
        log.warning("%s could not refund payment %s", provider.id, payment.provider_ref,
                    exc_info=exc)
        problem = f"{provider.name} could not refund: {type(exc).__name__}: {exc}"[:500]
        with database.atomic():
            _event(_locked(order.id), "refund", problem, actor=actor)
        raise OrderRefused(f"{problem}. Nothing was changed.") from exc
    outcome = apply_payment_event(provider.id, answer)
    with database.atomic():
        delivery, locked = _locked_delivery(order)
        if locked.status == REFUNDED:
            _stop_delivery(delivery)
            return locked
        problem = (f"{provider.name} answered the refund with {answer.kind} ({outcome}); "
                   f"the order is still {locked.status.replace('_', ' ')}")
        _event(locked, "refund", problem, actor=actor)
    raise OrderRefused(f"{problem}. Check the payment in {provider.name}.")
