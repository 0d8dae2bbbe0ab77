"""Fixtures: app (fresh database, demo catalog, sandboxes on), client, runner,
live_server (waitress + worker threads on a loopback port), buyer helpers.

TOPUP_TEST_DATABASE_URL=postgresql://... runs the same suite on Postgres.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time

import pytest
import waitress.server

from topup import create_app
from topup.db import close_all
from topup.models import Order, Package
from topup_plugins.sandbox import signing

WEBHOOK_SECRET = "whsec_test_" + "x" * 24
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
IDEMPOTENCY = re.compile(r'name="idempotency_key" value="([^"]+)"')


@pytest.fixture
def database_url(tmp_path):
    return os.environ.get("TOPUP_TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'test.sqlite'}"


@pytest.fixture
def config(database_url, tmp_path):
    """Test configuration; a test may change it before asking for `app`."""
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "DATABASE_URL": database_url,
        "DISABLED_PLUGINS": [],
        "PLUGINS": {"sandbox_payment": {"webhook_secret": WEBHOOK_SECRET}},
        "DELIVERY_RETRY_BASE_SECONDS": 0,
        "WORKER_POLL_SECONDS": 0.05,
        "RATELIMIT_ENABLED": False,  # tests/web/test_limits.py switches them on
        "PAGE_CACHE_SECONDS": 0,  # tests change the catalog and look at once; test_shop checks the cache
    }


@pytest.fixture
def app(config, tmp_path, monkeypatch):
    from topup import demo, schema

    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app(config)
    with app.app_context():
        pm = app.extensions["topup"].pm
        schema.drop_all(pm)
        schema.create_all(pm)
        demo.seed()
    yield app
    close_all()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class LiveServer:
    def __init__(self, app, workers: int = 1):
        from topup.worker import Worker

        self.server = waitress.server.create_server(app, host="127.0.0.1", port=0, threads=8)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        app.config["INTERNAL_URL"] = self.url  # as `topup serve` sets it
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.worker = Worker(app, workers) if workers else None
        self.stopping = False

    def _run(self):
        try:
            self.server.run()
        except OSError:  # select() on sockets that stop() closed under it
            if not self.stopping:
                raise

    def start(self):
        self.thread.start()
        if self.worker:
            self.worker.start()
        return self

    def stop(self):
        if self.worker:
            self.worker.stop()
        self.stopping = True
        self.server.close()
        self.thread.join(5)


@pytest.fixture
def sandbox_webhooks(monkeypatch) -> list:
    """Webhooks the sandbox would send, captured instead: (url, secret, body) each."""
    sent = []
    monkeypatch.setattr("topup_plugins.sandbox.payment.send_webhook",
                        lambda url, secret, body, **_: sent.append((url, secret, body)))
    return sent


@pytest.fixture
def live_server(app):
    server = LiveServer(app).start()
    yield server
    server.stop()


# --- helpers tests share -------------------------------------------------------


def form_tokens(html: str) -> dict:
    return {"csrf_token": CSRF.search(html).group(1),
            "idempotency_key": IDEMPOTENCY.search(html).group(1)}


def package_id(quantity: int) -> int:
    return Package.get(Package.quantity == quantity).id


def buy(client, *, country="US", account="@demo_user", coins=70, method="sandbox", email="",
        tokens=None, **extra):
    """Submit the product page's form as a browser would. Returns the response."""
    if tokens is None:
        tokens = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))
    data = {**tokens, "country": country, "account": account, "method": method,
            "email": email, "intent": "buy"}
    if coins is not None:
        data["package"] = str(package_id(coins))
    data.update(extra)
    return client.post("/tiktok-coins", data=data)


def plugin_problems() -> dict[str, str]:
    """Plugins' failures while the shop ran, as the operator sees them
    (topup.problems): plugin -> its last message."""
    from topup.problems import recent

    return {problem.plugin: problem.message for problem in recent()}


def place_order(client, **kwargs) -> Order:
    response = buy(client, **kwargs)
    assert response.status_code == 303, response.get_data(as_text=True)
    return Order.get(Order.public_id == response.headers["Location"].rsplit("/", 1)[1])


def pay(app, order: Order, event_id: str | None = None) -> str:
    """The sandbox provider's success event for order, applied as its webhook
    would be (no request). Returns the outcome ("applied", "duplicate", ...)."""
    from topup import orders
    from topup.models import Payment
    from topup.money import Money
    from topup.payments import PaymentEvent

    payment = Payment.get(Payment.order == order.id)
    event = PaymentEvent(event_id=event_id or f"evt_{payment.provider_ref}", kind="succeeded",
                         payment_ref=payment.provider_ref,
                         amount=Money(payment.amount, payment.currency))
    with app.app_context():
        return orders.apply_payment_event("sandbox", event)


def sandbox_event(order: Order, kind: str = "succeeded", *, event_id=None, amount=None,
                  currency=None) -> bytes:
    payment = order.latest_payment()
    return json.dumps({
        "id": event_id or f"evt_{payment.provider_ref}_{kind}", "type": f"payment.{kind}",
        "created": int(time.time()),
        "data": {"payment_id": payment.provider_ref, "reference": order.public_id,
                 "amount": payment.amount if amount is None else amount,
                 "currency": currency or payment.currency},
    }).encode()


def signed_headers(body: bytes, secret: str = WEBHOOK_SECRET, timestamp=None) -> dict:
    return {"Content-Type": "application/json",
            signing.HEADER: signing.sign(secret, body, timestamp)}


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
