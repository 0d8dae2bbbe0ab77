"""Receipts: e-mail the buyer when their order is paid, delivered, needs a
person's look (after they paid) or is refunded; each exactly once.

Uses the shop's SMTP settings (SMTP_*, MAIL_FROM, PUBLIC_URL); without
SMTP_HOST it does nothing. Settings (PLUGINS["receipts"]): max_attempts (8),
retry_base_seconds (60), retry_max_seconds (3600), batch (20 per sweep);
{"$env": "NAME"} reads one from the environment, as for every plugin.
See docs/receipts.md.
"""
from __future__ import annotations

from flask import Blueprint

from topup import hookimpl, mail
from topup_plugins.receipts import outbox
from topup_plugins.receipts.models import ReceiptMail

# No routes: it only lends its templates (receipts/*.txt, *.html) to render_template.
bp = Blueprint("receipts", __name__, template_folder="templates")


@hookimpl
def register_models():
    return [ReceiptMail]


@hookimpl
def register_blueprints():
    return [bp]


@hookimpl
def order_status_changed(order, old, new):
    """Record the receipt this change owes, and try to send it at once."""
    if not mail.enabled() or not order.email:
        return
    kind = outbox.kind_for(order, old, new)
    if kind is not None:
        outbox.record_and_send(order, kind)


@hookimpl
def housekeeping():
    """Retry receipts that could not be sent yet."""
    if mail.enabled():
        outbox.retry_due()
