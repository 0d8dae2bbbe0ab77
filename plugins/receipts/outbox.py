"""Recording, claiming and sending receipts; retrying the ones that failed.

A receipt is recorded (insert-or-ignore) and tried at once, in the status
broadcast. Whoever sends must first win a compare-and-set on the row's
sending_until lease; a failure leaves the row unsent with last_error, and
housekeeping() tries again with backoff until max_attempts.
"""
from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from email.utils import parseaddr

from flask import current_app

from topup import mail, orders
from topup.config import resolve_secrets
from topup.models import Order, Payment, utcnow
from topup_plugins.receipts.compose import compose, order_link
from topup_plugins.receipts.models import ReceiptMail

log = logging.getLogger(__name__)

DEFAULTS = {"max_attempts": 8, "retry_base_seconds": 60, "retry_max_seconds": 3600,
            "batch": 20}


def settings() -> dict:
    """PLUGINS["receipts"] over the defaults, read like every plugin's settings
    ({"$env": "NAME"} works); a value from the environment is text, so each
    known setting is taken as a whole number."""
    merged = {**DEFAULTS, **resolve_secrets(current_app.config["PLUGINS"].get("receipts", {}))}
    for key in DEFAULTS:
        try:
            merged[key] = int(merged[key])
        except (TypeError, ValueError):
            raise ValueError(f"receipts {key} must be a whole number, "
                             f"not {merged[key]!r}") from None
    return merged


def kind_for(order, old: str, new: str) -> str | None:
    """Which receipt a status change owes the buyer, if any."""
    if new in (orders.PAID, orders.DELIVERED, orders.REFUNDED):
        return new
    if new == orders.NEEDS_ATTENTION and _money_arrived(order):
        return new  # "we are looking into it"; unpaid problems are the shop's alone
    return None


def _money_arrived(order) -> bool:
    return (Payment.select().where(Payment.order == order.id,
                                   Payment.status.in_(("succeeded", "refunded"))).exists())


def record_and_send(order, kind: str) -> None:
    """Record the receipt once, then try to send it now."""
    (ReceiptMail.insert(order_ref=order.public_id, kind=kind, to=order.email,
                        link=order_link(order))
     .on_conflict_ignore().execute())
    attempt(ReceiptMail.get(ReceiptMail.order_ref == order.public_id, ReceiptMail.kind == kind))


def retry_due() -> int:
    """Housekeeping: try due unsent receipts. Stops at the first failure (the
    server is likely still down) so one sweep waits on at most one timeout."""
    config = settings()
    now = utcnow()
    due = (ReceiptMail.select()
           .where(ReceiptMail.sent_at.is_null(),
                  ReceiptMail.attempts < config["max_attempts"],
                  ReceiptMail.next_attempt_at <= now,
                  ReceiptMail.sending_until.is_null() | (ReceiptMail.sending_until < now))
           .order_by(ReceiptMail.next_attempt_at)
           .limit(config["batch"]))
    sent = 0
    for row in list(due):
        outcome = attempt(row)
        if outcome is False:
            break
        sent += bool(outcome)
    return sent


def _claim(row: ReceiptMail):
    """Compare-and-set: lease the row if it is unsent, due and nobody holds it.
    Returns the lease's end (the claim's token), or None."""
    now = utcnow()
    # smtplib's timeout bounds each step (connect, EHLO, TLS, AUTH, MAIL, RCPT, DATA, QUIT)
    lease = now + timedelta(seconds=10 * current_app.config["SMTP_TIMEOUT_SECONDS"])
    claimed = (ReceiptMail.update(sending_until=lease, attempts=ReceiptMail.attempts + 1)
               .where(ReceiptMail.id == row.id, ReceiptMail.sent_at.is_null(),
                      ReceiptMail.attempts < settings()["max_attempts"],
                      ReceiptMail.next_attempt_at <= now,
                      ReceiptMail.sending_until.is_null() | (ReceiptMail.sending_until < now))
               .execute())
    return lease if claimed == 1 else None


def attempt(row: ReceiptMail) -> bool | None:
    """Claim and send one receipt. True: sent; False: failed (kept to retry);
    None: nothing to do (sent, someone else's, not due, or no longer true)."""
    lease = _claim(row)
    if lease is None:
        return None
    row = ReceiptMail.get_by_id(row.id)
    order = Order.get_or_none(Order.public_id == row.order_ref)
    if order is None or (row.kind == orders.NEEDS_ATTENTION
                         and order.status != orders.NEEDS_ATTENTION):
        # "we are looking into it" is no longer true (or the order is gone): say nothing
        _close(row, lease, "skipped: the order is now "
               + (order.status.replace("_", " ") if order else "deleted"))
        return None
    try:
        subject, text, html = compose(order, row.kind, row.link)
        message_id = _send(row, subject, text, html)
    except Exception as exc:  # kept unsent, retried by housekeeping
        _failed(row, lease, exc)
        return False
    (ReceiptMail.update(sent_at=utcnow(), message_id=str(message_id), sending_until=None,
                        last_error=None)
     .where(ReceiptMail.id == row.id).execute())  # sent is sent, even if the lease ran out
    return True


def message_id(row: ReceiptMail) -> str:
    """Stable per (order, kind), so a resend after a lost reply can be recognised;
    a digest, because the order's public id is the key to its page."""
    digest = hashlib.sha256(f"{row.order_ref}/{row.kind}".encode()).hexdigest()[:32]
    domain = parseaddr(current_app.config["MAIL_FROM"])[1].rpartition("@")[2] or "localhost"
    return f"<receipt.{row.kind}.{digest}@{domain}>"


def _send(row: ReceiptMail, subject: str, text: str, html: str) -> str:
    headers = {"Auto-Submitted": "auto-generated", "Message-ID": message_id(row)}
    return mail.send(row.to, subject, text, html, headers=headers)


def _failed(row: ReceiptMail, lease, exc: Exception) -> None:
    config = settings()
    error = _scrub(f"{type(exc).__name__}: {exc}")[:500]
    delay = min(config["retry_base_seconds"] * 2 ** max(row.attempts - 1, 0),
                config["retry_max_seconds"])
    (ReceiptMail.update(sending_until=None, last_error=error,
                        next_attempt_at=utcnow() + timedelta(seconds=delay))
     .where(ReceiptMail.id == row.id, ReceiptMail.sending_until == lease).execute())
    if row.attempts >= config["max_attempts"]:
        log.error("receipts: gave up on the %s e-mail for order %s after %d attempts: %s",
                  row.kind, row.order_ref[:8], row.attempts, error)
    else:
        log.warning("receipts: could not send the %s e-mail for order %s (attempt %d): %s",
                    row.kind, row.order_ref[:8], row.attempts, error)


def _close(row: ReceiptMail, lease, reason: str) -> None:
    """Stop trying a receipt that should not be sent any more."""
    (ReceiptMail.update(sending_until=None, last_error=reason,
                        attempts=max(row.attempts, settings()["max_attempts"]))
     .where(ReceiptMail.id == row.id, ReceiptMail.sending_until == lease).execute())


def _scrub(text: str) -> str:
    """An SMTP error must never carry the password into a log or the database."""
    password = current_app.config.get("SMTP_PASSWORD")
    return text.replace(password, "********") if password else text
