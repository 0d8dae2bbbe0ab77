"""Operations: /healthz, Prometheus /metrics, `topup backup`."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import timedelta


from topup import worker
from topup.cli import main
from topup.db import is_sqlite
from topup.models import Order, WorkerHeartbeat, utcnow

from tests.conftest import place_order, sandbox_event, signed_headers
from tests.conftest import pay


def test_healthz_needs_the_database_and_a_live_worker(app, client):
    down = client.get("/healthz")
    assert down.status_code == 503 and down.json["worker"] == "no delivery worker seen"
    assert down.json["database"] == "ok"
    worker.sweep(app)  # what a running worker does every few seconds
    up = client.get("/healthz")
    assert up.status_code == 200 and up.json == {"ok": True, "database": "ok", "worker": "ok"}
    WorkerHeartbeat.update(seen_at=utcnow() - timedelta(minutes=5)).execute()
    stale = client.get("/healthz")
    assert stale.status_code == 503 and "for 300 s" in stale.json["worker"]


def test_healthz_says_when_the_database_is_unreachable(config, tmp_path, monkeypatch):
    from topup import create_app

    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app({**config, "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/nothing"})
    answer = app.test_client().get("/healthz")
    assert answer.status_code == 503 and answer.json["database"].startswith("unreachable")


def test_without_the_database_buyers_and_providers_are_asked_to_retry_not_shown_a_500(
        config, tmp_path, monkeypatch, caplog):
    """A database restarting or failing over: 503 with Retry-After (webhook
    senders retry on it), in words a buyer understands, and one log line each."""
    from topup import create_app

    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app({**config, "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/nothing"})
    client = app.test_client()
    for path in ("/tiktok-coins", "/orders/abcdefghijklmnop", "/"):
        page = client.get(path, headers={"Accept-Language": "es"})
        assert page.status_code == 503, path
        assert page.headers["Retry-After"] == "30" and page.headers["Cache-Control"] == "no-store"
        assert "Temporalmente no disponible" in page.get_data(as_text=True)
    body = json.dumps({"id": "evt_pay_1", "type": "payment.succeeded", "created": int(time.time()),
                       "data": {"payment_id": "pay_1", "amount": 100, "currency": "USD"}}).encode()
    hook = client.post("/webhooks/sandbox", data=body, headers=signed_headers(body))
    assert hook.status_code == 503 and hook.json == {"error": "temporarily unavailable"}
    assert hook.headers["Retry-After"] == "30"
    logged = [r.getMessage() for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(logged) == 4 and "GET /tiktok-coins: OperationalError" in logged[0]


def metric(text: str, line_start: str) -> float:
    [value] = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(line_start)]
    return float(value)


def test_metrics_report_orders_latencies_and_webhook_rejects(app, client):
    with app.app_context():
        delivered, waiting = place_order(client), place_order(client)
    pay(app, delivered)
    assert worker.deliver_once(app)
    body = sandbox_event(waiting)
    forged = client.post("/webhooks/sandbox", data=body, headers=signed_headers(body, "wrong"))
    assert forged.status_code == 400

    text = client.get("/metrics").get_data(as_text=True)
    assert metric(text, 'topup_orders{status="delivered"}') == 1
    assert metric(text, 'topup_orders{status="awaiting_payment"}') == 1
    assert metric(text, "topup_payment_seconds_count") == 1
    assert metric(text, 'topup_delivery_seconds_bucket{le="5"}') == 1
    assert metric(text, 'topup_webhook_rejects_total{provider="sandbox"}') >= 1


def test_metrics_are_loopback_only_or_need_the_token(app, client):
    remote = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", environ_base=remote).status_code == 403
    app.config["METRICS_TOKEN"] = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = client.get("/metrics", environ_base=remote, headers={"Authorization": "Bearer scrape-me"})
    assert ok.status_code == 200 and "topup_orders" in ok.get_data(as_text=True)


def test_backup_copies_a_consistent_database_while_it_is_written(app, client, runner, tmp_path):
    if not is_sqlite():
        refused = runner.invoke(main, ["backup", str(tmp_path / "copy.sqlite")])
        assert refused.exit_code == 1 and "pg_dump" in refused.output
        return
    with app.app_context():
        for _ in range(5):
            place_order(client)
    stop = threading.Event()

    def keep_writing():
        with app.app_context():
            writer = app.test_client()
            while not stop.is_set():
                place_order(writer)

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        result = runner.invoke(main, ["backup", str(tmp_path / "copy.sqlite")])
    finally:
        stop.set()
        thread.join()
    assert result.exit_code == 0, result.output
    copy = sqlite3.connect(tmp_path / "copy.sqlite")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    orders_copied = copy.execute('SELECT count(*) FROM "order"').fetchone()[0]
    payments_copied = copy.execute("SELECT count(*) FROM payment").fetchone()[0]
    copy.close()
    assert 5 <= orders_copied <= Order.select().count()
    assert payments_copied == orders_copied  # each order with its payment: a consistent copy
    again = runner.invoke(main, ["backup", str(tmp_path / "copy.sqlite")])
    assert again.exit_code == 1 and "exists" in again.output
