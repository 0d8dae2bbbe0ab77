"""The dashboard: what needs a person first, then how the shop is doing.

Days are UTC calendar days (stored times are naive UTC). Revenue counts the
orders whose money is kept: paid, delivering and delivered; their `amount`
(price plus fee) is summed per currency in minor units, never converted.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

from flask import render_template
from flask_babel import lazy_gettext as _l
from peewee import fn

from topup import orders, reconcile
from topup.models import Order, OrderEvent, Product, utcnow
from topup.money import Money
from topup.web.admin import bp

REVENUE = (orders.PAID, orders.DELIVERING, orders.DELIVERED)
PERIODS = ((_l("Today"), 1), (_l("7 days"), 7), (_l("30 days"), 30))
CHART_DAYS = 30
ATTENTION_LIMIT = 50


def start_of(days: int, today: date | None = None) -> datetime:
    """Midnight (UTC) starting a period of `days` calendar days that ends today."""
    today = today or utcnow().date()
    return datetime.combine(today - timedelta(days=days - 1), time.min)


def summary(since: datetime) -> dict:
    """Orders placed since `since`; of them, how many were sold and for how much."""
    placed = Order.select().where(Order.created_at >= since).count()
    rows = (Order.select(Order.currency, fn.COUNT(Order.id), fn.SUM(Order.amount))
            .where(Order.created_at >= since, Order.status.in_(REVENUE))
            .group_by(Order.currency).order_by(Order.currency).tuples())
    revenue = [Money(int(total), currency) for currency, _count, total in rows]
    return {"placed": placed, "sold": sum(count for _currency, count, _total in rows),
            "revenue": revenue}


def orders_per_day(days: int = CHART_DAYS, today: date | None = None) -> list[tuple[date, int]]:
    """(day, orders placed) for each of the last `days` days, oldest first, zeros included."""
    today = today or utcnow().date()
    first = today - timedelta(days=days - 1)
    day = fn.date(Order.created_at)  # SQLite gives text, Postgres a date: both read as ISO
    counts = {str(value)[:10]: count for value, count in
              Order.select(day, fn.COUNT(Order.id))
              .where(Order.created_at >= datetime.combine(first, time.min))
              .group_by(day).tuples()}
    return [(first + timedelta(days=n), counts.get((first + timedelta(days=n)).isoformat(), 0))
            for n in range(days)]


def chart(per_day: list[tuple[date, int]], height: int = 80, step: int = 10) -> dict:
    """Bar geometry for the inline SVG: one bar per day, scaled to the busiest."""
    top = max((count for _day, count in per_day), default=0) or 1
    bars = []
    for n, (day, count) in enumerate(per_day):
        tall = round(count / top * height, 2)
        bars.append({"x": n * step + 1, "y": round(height - tall, 2), "width": step - 2,
                     "height": tall, "day": day, "count": count})
    return {"bars": bars, "width": len(per_day) * step, "height": height, "top": top,
            "total": sum(count for _day, count in per_day)}


def needs_attention(limit: int = ATTENTION_LIMIT) -> list[tuple[Order, OrderEvent | None]]:
    """Orders waiting for a person, oldest first, each with its last explained event."""
    waiting = list(Order.select(Order, Product).join(Product)
                   .where(Order.status == orders.NEEDS_ATTENTION)
                   .order_by(Order.updated_at, Order.id).limit(limit))
    last = {}
    if waiting:
        for event in (OrderEvent.select()
                      .where(OrderEvent.order.in_([order.id for order in waiting]),
                             OrderEvent.message.is_null(False))
                      .order_by(OrderEvent.id.desc())):
            last.setdefault(event.order_id, event)
    return [(order, last.get(order.id)) for order in waiting]


@bp.get("/")
def dashboard():
    per_day = orders_per_day()
    return render_template(
        "admin/dashboard.html",
        attention=needs_attention(), stuck=reconcile.stuck(),
        periods=[(label, summary(start_of(days))) for label, days in PERIODS],
        chart=chart(per_day))
