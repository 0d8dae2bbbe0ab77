"""Operations endpoints: /healthz for load balancers and process managers,
/metrics for Prometheus (prometheus_client's text format).

Gauges are read from the database at scrape time, so every process reports
the same truth however many serve the shop; only webhook rejections are
counted in-process (sum them across processes in Prometheus).
/metrics answers loopback only, unless METRICS_TOKEN is set (then a bearer
token is required from anywhere).
"""
from __future__ import annotations

import hmac
from datetime import timedelta

from flask import Blueprint, Response, abort, current_app, request
from peewee import fn
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from topup.db import database
from topup.models import Order, OrderEvent, WorkerHeartbeat, utcnow

bp = Blueprint("ops", __name__)

WORKER_SILENT_SECONDS = 60  # a worker sweeps every few seconds; a minute of silence is death
LATENCY_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 24 * 3600)

REGISTRY = CollectorRegistry()
WEBHOOK_REJECTS = Counter("topup_webhook_rejects", "Webhooks refused (bad signature or body)",
                          ["provider"], registry=REGISTRY)


@bp.get("/healthz")
def healthz():
    """200 when the database answers and a worker was seen lately; else 503, saying which."""
    problems = []
    try:
        database.execute_sql("SELECT 1")
        last = WorkerHeartbeat.select(fn.MAX(WorkerHeartbeat.seen_at)).scalar()
    except Exception as exc:  # the database is down: that is the answer
        return {"ok": False, "database": f"unreachable: {type(exc).__name__}"}, 503
    silent = None if last is None else (utcnow() - last).total_seconds()
    if silent is None or silent > WORKER_SILENT_SECONDS:
        problems.append("no delivery worker seen" + ("" if silent is None else f" for {int(silent)} s"))
    body = {"ok": not problems, "database": "ok",
            "worker": "ok" if not problems else problems[0]}
    return body, 200 if not problems else 503, {"Cache-Control": "no-store"}


@bp.get("/metrics")
def metrics():
    token = current_app.config.get("METRICS_TOKEN")
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, token.encode()):
            abort(401, "A bearer token is required.")
    elif request.remote_addr not in ("127.0.0.1", "::1"):
        abort(403, "Metrics are served to loopback only unless METRICS_TOKEN is set.")
    registry = CollectorRegistry()
    registry.register(DatabaseCollector())
    body = generate_latest(registry) + generate_latest(REGISTRY)
    return Response(body, mimetype="text/plain; version=0.0.4; charset=utf-8",
                    headers={"Cache-Control": "no-store"})


class DatabaseCollector:
    """Orders by status, and the last day's payment and delivery latencies."""

    def collect(self):
        by_status = GaugeMetricFamily("topup_orders", "Orders by status", labels=["status"])
        for status, count in (Order.select(Order.status, fn.COUNT(Order.id))
                              .group_by(Order.status).tuples()):
            by_status.add_metric([status], count)
        yield by_status
        since = utcnow() - timedelta(days=1)
        yield _histogram("topup_payment_seconds", "Order placed to paid, last 24 h",
                         _latencies(since, None, "paid"))
        yield _histogram("topup_delivery_seconds", "Paid to delivered, last 24 h",
                         _latencies(since, "paid", "delivered"))


def _latencies(since, start_status: str | None, end_status: str) -> list[float]:
    """Seconds from the order's creation (or its `start_status` event) to its `end_status` event."""
    ends = {order_id: at for order_id, at in OrderEvent.select(OrderEvent.order, OrderEvent.created_at)
            .where(OrderEvent.to_status == end_status, OrderEvent.created_at >= since).tuples()}
    if start_status is None:
        starts = dict(Order.select(Order.id, Order.created_at).where(Order.id.in_(list(ends))).tuples())
    else:
        starts = dict(OrderEvent.select(OrderEvent.order, fn.MIN(OrderEvent.created_at))
                      .where(OrderEvent.to_status == start_status, OrderEvent.order.in_(list(ends)))
                      .group_by(OrderEvent.order).tuples())
    return [(ends[key] - starts[key]).total_seconds() for key in ends if key in starts]


def _histogram(name: str, documentation: str, values: list[float]) -> HistogramMetricFamily:
    buckets = [(str(bound), sum(1 for value in values if value <= bound)) for bound in LATENCY_BUCKETS]
    buckets.append(("+Inf", len(values)))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=sum(values))
