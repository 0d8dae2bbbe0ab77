"""Crashes: the `topup serve` process is SIGKILLed right after it committed
payments (its worker threads holding deliveries), then a `topup worker`
process is SIGKILLed in the middle of deliveries (credited, answer not yet
recorded). After a restart every paid order ends delivered exactly once:
one delivery row done, one `delivered` transition, one effective credit in
the backend's ledger."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import re
import urllib.request
from pathlib import Path

import pytest

from topup import orders
from topup.models import Delivery, Order, OrderEvent
from topup_plugins.sandbox.delivery import SandboxCredit

from tests.conftest import place_order, sandbox_event, signed_headers, wait_for

TOPUP = Path(sys.executable).parent / "topup"
ORDERS = 8


@pytest.fixture
def spawn(app, database_url, tmp_path):
    """Start `topup ...` processes on the test database; kill them at the end."""
    started = []
    env = {**{name: value for name, value in os.environ.items() if not name.startswith("TOPUP_")},
           "TOPUP_INSTANCE_PATH": str(tmp_path / "worker-instance"),
           "TOPUP_DATABASE_URL": database_url, "TOPUP_SECRET_KEY": "crash-test",
           "TOPUP_DISABLED_PLUGINS": "[]",
           "TOPUP_PLUGINS": json.dumps({"sandbox_payment": {"webhook_secret": "whsec_crash"},
                                        "sandbox_delivery": {"pause_after_credit_seconds": 30}}),
           "TOPUP_DELIVERY_LEASE_SECONDS": "3", "TOPUP_WORKER_POLL_SECONDS": "0.1"}

    def start(*command, delivery: dict):
        plugins = {**json.loads(env["TOPUP_PLUGINS"]), "sandbox_delivery": delivery}
        process = subprocess.Popen([str(TOPUP), *command],
                                   env={**env, "TOPUP_PLUGINS": json.dumps(plugins)},
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        process.stdout.close()


def kill(process) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def credited() -> int:
    return SandboxCredit.select().where(SandboxCredit.credited_at.is_null(False)).count()


def paid_through(server_url: str, order) -> None:
    body = sandbox_event(order)
    request = urllib.request.Request(f"{server_url}/webhooks/sandbox", data=body, method="POST",
                                     headers=signed_headers(body, "whsec_crash"))
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_killed_processes_lose_and_double_nothing(app, client, spawn):
    with app.app_context():
        placed = [place_order(client, account=f"@crash_{index}") for index in range(ORDERS)]

    # 1. The server commits every payment, its worker threads lease deliveries
    #    (slow ones), and the server is killed before any is done.
    server = spawn("serve", "--port", "0", delivery={"delay_seconds": 30})
    url = re.search(r"serving on (http://\S+?)/?$", server.stdout.readline()).group(1)
    for order in placed:
        paid_through(url, order)
    assert Order.select().where(Order.status.in_((orders.PAID, orders.DELIVERING))).count() == ORDERS
    wait_for(lambda: Delivery.select().where(Delivery.status == "working").count() >= 1)
    kill(server)
    assert credited() == 0

    # 2. A worker credits accounts and is killed before it records the answers.
    worker = spawn("worker", "--threads", "2", delivery={"pause_after_credit_seconds": 30})
    wait_for(lambda: credited() >= 2, timeout=30)
    kill(worker)
    credited_before_restart = credited()
    undelivered_but_credited = (SandboxCredit.select()
                                .join(Order, on=(Order.public_id == SandboxCredit.order_ref))
                                .where(SandboxCredit.credited_at.is_null(False),
                                       Order.status != orders.DELIVERED).count())
    assert undelivered_but_credited >= 2  # the crash really hit the window

    # 3. Restart: leases run out, every order is delivered, nobody credited twice.
    spawn("worker", "--threads", "2", delivery={})
    wait_for(lambda: Order.select().where(Order.status == orders.DELIVERED).count() == ORDERS,
             timeout=60)
    assert credited_before_restart >= 2
    assert SandboxCredit.select().count() == credited() == ORDERS
    for order in placed:
        [delivery] = Delivery.select().where(Delivery.order == order.id)
        assert delivery.status == "done"
        [credit] = SandboxCredit.select().where(SandboxCredit.order_ref == order.public_id)
        assert delivery.reference == credit.reference
        delivered = OrderEvent.select().where(OrderEvent.order == order.id,
                                              OrderEvent.to_status == orders.DELIVERED).count()
        assert delivered == 1
    # The crashed attempts show: some orders took more than one try.
    assert sum(credit.attempts for credit in SandboxCredit.select()) > ORDERS
